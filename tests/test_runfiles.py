"""Run files are read without following links or blocking, and removed without recursion."""

import errno
import logging
import os
import threading

import pytest

from grader.sandbox import runfiles


@pytest.fixture
def run(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "log.json").write_text("[]")
    return tmp_path


def test_a_regular_file_is_read(run):
    assert runfiles.read(str(run), "out/log.json", 100) == b"[]"
    assert runfiles.read(str(run), "out/missing.json", 100) is None


def test_a_link_is_refused_not_followed(run, tmp_path_factory):
    secret = tmp_path_factory.mktemp("host") / "secret"
    secret.write_text("host secret")
    os.symlink(secret, run / "out" / "model.json")
    with pytest.raises(runfiles.Refused, match="model.json is a link"):
        runfiles.read(str(run), "out/model.json", 100)


def test_a_folder_replaced_by_a_link_is_refused(run, tmp_path_factory):
    host = tmp_path_factory.mktemp("host")
    (host / "log.json").write_text('[{"forged": true}]')
    os.rename(run / "out", run / "real")
    os.symlink(host, run / "out")
    with pytest.raises(runfiles.Refused, match="out is a link or not a folder"):
        runfiles.read(str(run), "out/log.json", 100)


def test_a_link_deeper_in_the_path_is_refused_by_the_path_of_that_folder(run, tmp_path_factory):
    host = tmp_path_factory.mktemp("host")
    (host / "deeper").mkdir()
    (host / "deeper" / "log.json").write_text('[{"forged": true}]')
    os.symlink(host, run / "out" / "inner")
    with pytest.raises(runfiles.Refused) as refused:
        runfiles.read(str(run), "out/inner/deeper/log.json", 100)
    assert (refused.value.name, refused.value.why) == ("out/inner", "is a link or not a folder")


def test_a_named_pipe_is_refused_without_blocking(run):
    os.mkfifo(run / "out" / "progress")
    done = []
    reader = threading.Thread(target=lambda: done.append(_refusal(run, "out/progress")), daemon=True)
    reader.start()
    reader.join(5)
    assert done == ["progress is not a regular file"]


def _refusal(run, relative):
    try:
        runfiles.read(str(run), relative, 100)
    except runfiles.Refused as refusal:
        return f"{refusal.name.split('/')[-1]} {refusal.why}"
    return None


def test_size_is_checked_before_reading(run):
    (run / "out" / "big.json").write_bytes(b"x" * 101)
    with pytest.raises(runfiles.Refused, match="larger than 100 bytes"):
        runfiles.read(str(run), "out/big.json", 100)


def test_a_copy_is_a_new_private_file(run, tmp_path_factory):
    target = tmp_path_factory.mktemp("private") / "log.json"
    assert runfiles.copy(str(run), "out/log.json", 100, str(target))
    assert target.read_text() == "[]" and not target.is_symlink() and oct(target.stat().st_mode & 0o777) == "0o600"
    assert not runfiles.copy(str(run), "out/none.json", 100, str(target) + "2")


def test_the_size_cap_takes_a_file_of_exactly_its_size_and_refuses_one_byte_more_by_its_name(run, tmp_path_factory, monkeypatch):
    private = tmp_path_factory.mktemp("private")
    (run / "out" / "exact.bin").write_bytes(b"x" * 100)
    (run / "out" / "over.bin").write_bytes(b"x" * 101)
    assert runfiles.read(str(run), "out/exact.bin", 100) == b"x" * 100
    assert runfiles.copy(str(run), "out/exact.bin", 100, str(private / "exact")) and (private / "exact").read_bytes() == b"x" * 100
    for use in (lambda: runfiles.read(str(run), "out/over.bin", 100), lambda: runfiles.copy(str(run), "out/over.bin", 100, str(private / "over"))):
        with pytest.raises(runfiles.Refused) as refused:
            use()
        assert (refused.value.name, refused.value.why) == ("out/over.bin", "is larger than 100 bytes")
    assert not (private / "over").exists()
    (run / "out" / "weights.h5").write_bytes(bytes(range(256)) * 10240)  # 2.5 MiB: several chunks
    assert runfiles.copy(str(run), "out/weights.h5", 3 << 20, str(private / "weights.h5"))
    assert (private / "weights.h5").read_bytes() == (run / "out" / "weights.h5").read_bytes()
    with pytest.raises(runfiles.Refused, match="is larger than 1.5 MiB"):
        runfiles.copy(str(run), "out/weights.h5", 3 << 19, str(private / "cut.h5"))
    assert not (private / "cut.h5").exists()
    grown = os.open(run / "out" / "over.bin", os.O_RDONLY)  # a file that grew between the check and the read
    monkeypatch.setattr(runfiles, "open_regular", lambda root, relative, limit: grown)
    with pytest.raises(runfiles.Refused, match="is larger than 100 bytes"):
        runfiles.read(str(run), "out/over.bin", 100)


def test_a_file_that_grows_after_the_check_is_refused_by_its_name_and_leaves_no_partial_copy(run, tmp_path_factory, monkeypatch):
    private = tmp_path_factory.mktemp("private")
    (run / "out" / "weights.h5").write_bytes(bytes(range(256)) * 10240)  # 2.5 MiB now, under 1.5 MiB when checked
    monkeypatch.setattr(runfiles, "open_regular", lambda root, relative, limit: os.open(run / relative, os.O_RDONLY))
    for use in (lambda: runfiles.copy(str(run), "out/weights.h5", 3 << 19, str(private / "weights.h5")),
                lambda: runfiles.read(str(run), "out/weights.h5", 3 << 19)):
        with pytest.raises(runfiles.Refused) as refused:
            use()
        assert (refused.value.name, refused.value.why) == ("out/weights.h5", "is larger than 1.5 MiB")
    assert not (private / "weights.h5").exists()


def test_a_cap_of_exactly_one_mebibyte_is_said_in_mebibytes(run):
    (run / "out" / "model.json").write_bytes(b"x" * ((1 << 20) + 1))
    with pytest.raises(runfiles.Refused) as refused:
        runfiles.read(str(run), "out/model.json", 1 << 20)
    assert refused.value.why == "is larger than 1 MiB"


def test_a_copy_never_writes_through_a_link_at_its_destination(run, tmp_path_factory):
    host = tmp_path_factory.mktemp("host") / "secret"
    host.write_text("host secret")
    destination = tmp_path_factory.mktemp("private") / "log.json"
    os.symlink(host, destination)
    with pytest.raises(FileExistsError):
        runfiles.copy(str(run), "out/log.json", 100, str(destination))
    assert host.read_text() == "host secret"
    assert os.path.islink(destination)  # refused, and what was there is not this copy's to remove
    kept = destination.parent / "kept.json"
    kept.write_text("kept")
    with pytest.raises(FileExistsError):
        runfiles.copy(str(run), "out/log.json", 100, str(kept))
    assert kept.read_text() == "kept"


def test_a_socket_is_refused_as_not_a_regular_file(run):
    import socket

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(run / "out" / "tensorboard.sock"))
    try:
        with pytest.raises(runfiles.Refused) as refused:
            runfiles.read(str(run), "out/tensorboard.sock", 100)
        assert (refused.value.name, refused.value.why) == ("out/tensorboard.sock", "is not a regular file")
    finally:
        listener.close()


def make_deep_tree(top, levels: int) -> None:
    """`levels` nested folders in `top`, a file and a link to / at the bottom."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w").close()
    os.symlink("/", "root", dir_fd=fd)
    os.close(fd)


def beside(tmp_path, monkeypatch):
    """Files around the tree to remove, and the working folder among them: a remover that
    climbs out of its tree, or reads a name against the working folder, takes them."""
    for place in (tmp_path / "here", tmp_path / "sibling"):
        place.mkdir()
        (place / "file").write_text("kept")
    (tmp_path / "file").write_text("kept")
    monkeypatch.chdir(tmp_path / "here")
    return [tmp_path / "file", tmp_path / "here" / "file", tmp_path / "sibling" / "file"]


def test_a_tree_deeper_than_recursion_and_path_max_is_removed(tmp_path, monkeypatch):
    around = beside(tmp_path, monkeypatch)
    top = tmp_path / "run"
    top.mkdir()
    make_deep_tree(top, 3000)  # too deep for shutil.rmtree, and longer than PATH_MAX
    for name in ("file", "here", "sibling"):  # names that also exist around it
        (top / name).write_text("gone")
    assert runfiles.remove_tree(str(top)) and not top.exists()
    assert all(path.read_text() == "kept" for path in around)


def test_removal_follows_no_link_and_never_raises(tmp_path, monkeypatch):
    beside(tmp_path, monkeypatch)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "file").write_text("kept")
    top = tmp_path / "run"
    (top / "a").mkdir(parents=True)
    os.symlink(keep, top / "a" / "link")
    assert runfiles.remove_tree(str(top)) and (keep / "file").read_text() == "kept"
    assert runfiles.remove_tree(str(tmp_path / "missing"))
    os.symlink(keep, tmp_path / "link")  # the folder to remove is itself a link: the link goes, not what it leads to
    assert runfiles.remove_tree(str(tmp_path / "link")) is True and not os.path.lexists(tmp_path / "link")
    (tmp_path / "file.txt").write_text("a file, not a folder")
    assert runfiles.remove_tree(str(tmp_path / "file.txt")) is True and not (tmp_path / "file.txt").exists()
    assert (keep / "file").read_text() == "kept"
    assert runfiles.remove_tree("\0") is False  # an invalid path: logged, not raised


def two_folders(top):
    """`top` holding two folders of one file each."""
    for name in ("p", "q"):
        (top / name).mkdir(parents=True)
        (top / name / "file").write_text("gone")


def failing_once(real, error, *, done_first=False):
    """`real` (os.open, os.rmdir, os.unlink) whose first call on a name inside a folder raises
    `error`: instead of its work, or after it if `done_first` (the name vanished meanwhile)."""
    failed = []

    def call(path, *args, dir_fd=None, **kwargs):
        if dir_fd is None or path == ".." or failed:
            return real(path, *args, dir_fd=dir_fd, **kwargs)
        failed.append(path)
        if done_first:
            real(path, *args, dir_fd=dir_fd, **kwargs)
        raise error

    return call, failed


def warnings_of(caplog) -> list[str]:
    """The remover's warnings; it never logs an error (no exception escaped it)."""
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_a_folder_that_cannot_be_opened_is_tried_once_and_the_rest_is_still_removed(tmp_path, monkeypatch, caplog):
    around = beside(tmp_path, monkeypatch)
    top = tmp_path / "run"
    two_folders(top)
    opening, failed = failing_once(os.open, PermissionError(errno.EACCES, "Permission denied"))
    with monkeypatch.context() as patch:
        patch.setattr(os, "open", opening)
        assert runfiles.remove_tree(str(top)) is False
    [locked] = failed
    assert sorted(path.relative_to(top).as_posix() for path in top.rglob("*")) == [locked, f"{locked}/file"]
    assert all(path.read_text() == "kept" for path in around)
    warned = warnings_of(caplog)
    assert any(f"{top}/{locked}" in message for message in warned)  # the folder it could not open
    assert any(str(top) in message and f"{top}/" not in message for message in warned)  # and the tree it could not remove


def test_a_folder_that_cannot_be_removed_is_tried_once_and_the_rest_is_still_removed(tmp_path, monkeypatch, caplog):
    around = beside(tmp_path, monkeypatch)
    top = tmp_path / "run"
    two_folders(top)
    removing, failed = failing_once(os.rmdir, OSError(errno.EBUSY, "Device or resource busy"))  # a mount point, say
    with monkeypatch.context() as patch:
        patch.setattr(os, "rmdir", removing)
        assert runfiles.remove_tree(str(top)) is False
    [busy] = failed
    assert [path.relative_to(top).as_posix() for path in top.rglob("*")] == [busy]
    assert all(path.read_text() == "kept" for path in around)
    assert any(f"{top}/{busy}" in message for message in warnings_of(caplog))


def test_a_file_that_cannot_be_removed_is_left_named_in_a_warning_and_the_rest_is_still_removed(tmp_path, monkeypatch, caplog):
    around = beside(tmp_path, monkeypatch)
    top = tmp_path / "run"
    top.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (top / name).write_text("gone")
    unlinking, failed = failing_once(os.unlink, PermissionError(errno.EPERM, "Operation not permitted"))  # immutable, say
    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", unlinking)
        assert runfiles.remove_tree(str(top)) is False
    [kept] = failed
    assert [path.name for path in top.iterdir()] == [kept]
    assert all(path.read_text() == "kept" for path in around)
    assert any(kept in message for message in warnings_of(caplog))


def test_a_file_that_vanishes_while_its_folder_is_emptied_does_not_stop_the_removal(tmp_path, monkeypatch):
    around = beside(tmp_path, monkeypatch)
    top = tmp_path / "run"
    top.mkdir()
    for name in ("a", "b", "c"):
        (top / name).write_text("gone")
    unlinking, failed = failing_once(os.unlink, FileNotFoundError(errno.ENOENT, "No such file"), done_first=True)  # a process still exiting took it
    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", unlinking)
        assert runfiles.remove_tree(str(top)) is True
    assert len(failed) == 1 and not top.exists()
    assert all(path.read_text() == "kept" for path in around)
