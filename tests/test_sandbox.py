"""Inside the sandbox: no network, no view of the assignment, limits enforced from outside."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from grader import sandbox
from grader.config.manifest import Limits
from grader.config.match import RunCell
from grader.sandbox import bwrap, cgroups, rundisk, runs, watch, zygote
from conftest import ASSIGNMENT, missing_capability
from test_runfiles import make_deep_tree

needs_bwrap = pytest.mark.usefixtures("bubblewrap")


def run(tmp_path, *sources, limits=Limits(cell_timeout=30, run_timeout=60)):
    cells = [RunCell(f"c{i}", "answer", s) for i, s in enumerate(sources)]
    (tmp_path / "models").mkdir(exist_ok=True)
    mounts = sandbox.Mounts(data_dir=str(tmp_path / "models"), keras_models=str(tmp_path / "models"))
    outcome = sandbox.run(cells, str(tmp_path / "work"), mounts, limits, 96, 32, sandboxed=True)
    return outcome, _log(outcome)


@needs_bwrap
def test_network_connection_fails(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    _, log = run(tmp_path, f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=3)")
    listener.close()
    assert log["c0"]["status"] == "error" and log["c0"]["error"]["name"] in ("ConnectionRefusedError", "OSError", "TimeoutError")
    assert not accepted


@needs_bwrap
def test_assignment_source_cannot_be_read(tmp_path):
    _, log = run(tmp_path, f"open({ASSIGNMENT + '/source.ipynb'!r}).read()")
    assert log["c0"]["error"]["name"] == "FileNotFoundError"


@needs_bwrap
def test_runs_as_an_unprivileged_user_with_a_scrubbed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "hunter2")
    _, log = run(tmp_path, "import os\nprint(os.getuid(), 'GRADER_SECRET' in os.environ)")
    assert log["c0"]["stdout"].split() == ["65534", "False"]


@contextlib.contextmanager
def busy(count, cpu=None):
    """`count` processes that compute without end (pinned to `cpu` if given), each in a
    session of its own (with autogroup scheduling, a session is what shares the CPU)."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True, preexec_fn=pin) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@needs_bwrap
def test_an_endless_cell_is_stopped_by_its_cpu_time_and_named(tmp_path):
    outcome, _ = run(tmp_path, "x = 1", "while True:\n    pass", limits=Limits(cell_timeout=3, run_timeout=60))
    assert outcome.stopped_by == "cell_timeout" and outcome.stopped_cell == "c1" and outcome.host_fault == ""
    assert 3 <= outcome.cpu_seconds < 10
    assert outcome.limit_message == "the cell used more than 3 s of CPU time and was stopped"


@needs_bwrap
def test_a_sleeping_cell_is_stopped_by_the_wall_clock_and_blamed_on_the_student(tmp_path):
    outcome, _ = run(tmp_path, "import time\ntime.sleep(10**6)", limits=Limits(cell_timeout=2, run_timeout=60))
    assert outcome.stopped_by == "wall_clock" and outcome.stopped_cell == "c0" and outcome.host_fault == ""
    assert outcome.seconds >= watch.idle_limit(2) and outcome.cpu_seconds < 2
    assert outcome.limit_message == "the cell waited more than 2 s without computing (sleeping or blocked) and was stopped"


@needs_bwrap
def test_a_run_the_host_starves_is_stopped_by_the_wall_clock_and_blamed_on_the_host(tmp_path):
    # The cell wants a CPU all the time, but shares one with eight spinners, at the lowest priority.
    cpu = min(os.sched_getaffinity(0))
    with busy(8, cpu):
        outcome, _ = run(tmp_path, f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nos.nice(19)\nwhile True:\n    pass",
                         limits=Limits(cell_timeout=2, run_timeout=60))
    assert outcome.stopped_by == "host_busy" and outcome.cpu_seconds < 2 and outcome.seconds >= watch.backstop(2)
    assert "too busy" in outcome.host_fault and outcome.host_fault == outcome.limit_message


@needs_bwrap
@pytest.mark.slow
def test_an_honest_cell_importing_tensorflow_completes_while_every_core_is_busy(tmp_path):
    with busy(len(os.sched_getaffinity(0))):
        outcome, log = run(tmp_path, "import tensorflow as tf\nprint(int(tf.constant(6) * 7))", limits=Limits(cell_timeout=30, run_timeout=60))
    assert outcome.stopped_by is None and outcome.host_fault == "" and log["c0"]["stdout"].strip() == "42"
    assert outcome.cpu_seconds > 0.5  # the import was counted


@needs_bwrap
def test_a_cell_that_fills_the_disk_is_stopped_and_the_cap_named(tmp_path):
    if rundisk.problem() is not None:
        missing_capability(f"no disk of the run's own here: {rundisk.problem()}")
    outcome, _ = run(tmp_path, "for i in range(400_000):\n    open(f'/scratch/f{i}', 'w').close()")
    assert outcome.stopped_by == "disk_full" and "20000 files" in outcome.limit_message


@needs_bwrap
def test_a_progress_file_replaced_by_a_pipe_blocks_nothing(tmp_path):
    source = "import os, time\nos.remove('/scratch/out/progress')\nos.mkfifo('/scratch/out/progress')\ntime.sleep(10**6)"
    outcome, _ = run(tmp_path, "x = 1", source, limits=Limits(cell_timeout=1, run_timeout=60))
    assert outcome.stopped_by == "wall_clock" and outcome.stopped_cell == "c1"


@needs_bwrap
def test_files_and_links_left_in_the_out_folder_count_for_nothing(tmp_path):
    """The run reports through files opened before it started, in a folder it cannot see:
    whatever it leaves under /scratch/out (forged files, links to the host) is never read."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "log.json").write_text('[{"key": "c0", "stdout": "forged"}]')
    forge = (f"import json, os\nos.symlink({str(host / 'log.json')!r}, '/scratch/out/model.json')\n"
             "json.dump([{'key': 'c0', 'status': 'ok', 'stdout': 'forged'}], open('/scratch/out/log.json', 'w'))\n"
             "print(sorted(os.listdir('/scratch/out')), os.path.exists('/slots/0/export'))")
    outcome = _run_outcome(tmp_path, forge)
    assert outcome.stopped_by is None and not os.path.exists(os.path.join(outcome.out_dir, "model.json"))
    log = _log(outcome)
    assert log["c0"]["stdout"].strip() == "['log.json', 'model.json', 'progress'] False" and list(log) == ["c0"]
    outcome = _run_outcome(tmp_path, f"import os\nos.rename('/scratch/out', '/scratch/old')\nos.symlink({str(host)!r}, '/scratch/out')")
    assert outcome.stopped_by is None and "forged" not in json.dumps(_log(outcome)) and _log(outcome)["c0"]["status"] == "ok"


@needs_bwrap
def test_the_runner_seals_its_witness_of_each_cell_as_the_cell_ends(tmp_path):
    """One record per cell, written when it has ended; the run can forge its log only by
    reaching into the runner's own descriptors, and the witness of an earlier cell is closed by then."""
    reach = ("import json, os\n"
             "for fd in os.listdir('/proc/self/fd'):\n"
             "    try:\n        target = os.readlink(f'/proc/self/fd/{fd}')\n    except OSError:\n        continue\n"
             "    if target.endswith('log.json'):\n"
             "        os.ftruncate(int(fd), 0)\n"
             "        os.pwrite(int(fd), json.dumps([{'key': 'c0', 'status': 'ok'}]).encode(), 0)\n"
             "os._exit(0)")
    outcome = _run_outcome_cells(tmp_path, ["raise ValueError('first')", reach])
    assert outcome.witness[0] == ({"key": "c0", "status": "error", "error": "ValueError"},)
    assert outcome.witness[1] == ()  # the run ended inside it: no record
    assert _log(outcome)["c0"]["status"] == "ok"  # the log is the run's to forge; the witness is not


def _run_outcome(tmp_path, source):
    return _run_outcome_cells(tmp_path, [source])


def _run_outcome_cells(tmp_path, sources):
    (tmp_path / "models").mkdir(exist_ok=True)
    mounts = sandbox.Mounts(data_dir=str(tmp_path / "models"), keras_models=str(tmp_path / "models"))
    cells = [RunCell(f"c{index}", "answer", source) for index, source in enumerate(sources)]
    return sandbox.run(cells, tempfile.mkdtemp(dir=tmp_path), mounts, Limits(), 96, 32, sandboxed=True)


@needs_bwrap
def test_output_is_capped_head_and_tail(tmp_path):
    _, log = run(tmp_path, "for i in range(200000):\n    print('line', i)")
    out = log["c0"]["stdout"]
    assert out.startswith("line 0\n") and out.rstrip().endswith("line 199999") and "characters cut" in out
    assert len(out) < 2 * Limits().output_chars + 100


def _plan(tmp_path, limits=Limits(cell_timeout=30, run_timeout=60), warm=()):
    (tmp_path / "models").mkdir(exist_ok=True)
    mounts = sandbox.Mounts(data_dir=str(tmp_path / "models"), keras_models=str(tmp_path / "models"))
    return sandbox.Plan(mounts, limits, 96, 32, True, warm)


def _log(outcome):
    path = f"{outcome.out_dir}/log.json"
    return {entry["key"]: entry for entry in json.load(open(path))} if os.path.exists(path) else {}



@needs_bwrap
def test_one_zygote_serves_every_run_and_each_run_starts_from_nothing(tmp_path):
    """The zygote imports the plan's modules once; each run is a child of it that finds
    none of the last run's files, memory, environment, IPC objects or processes."""
    runner = sandbox.Runner(_plan(tmp_path, limits=Limits(cell_timeout=2, run_timeout=60), warm=("decimal",)), ahead=True)
    probe = (
        "import sys, os, ctypes, decimal\n"
        "libc = ctypes.CDLL(None)\n"
        "print('decimal' in sys.modules, [os.path.exists(p) for p in ('/tmp/mark', '/scratch/mark', '/dev/shm/mark')],"
        " hasattr(decimal, 'MARK'), 'MARK' in os.environ, libc.shmget(4242, 4096, 0) >= 0, os.listdir('/scratch/out'), os.getpid())\n"
    )
    leave = (
        "for p in ('/tmp/mark', '/scratch/mark', '/dev/shm/mark'):\n    open(p, 'w').write('x')\n"
        "decimal.MARK = 1\nos.environ['MARK'] = '1'\nprint(libc.shmget(4242, 4096, 0o1666) >= 0)\n"
        "import subprocess\nsubprocess.Popen(['sleep', '321'], start_new_session=True)\n"
    )
    try:
        first = runner.run([RunCell("c0", "answer", probe + leave)])
        zygote = runner._zygote
        assert zygote is not None and zygote.alive()
        time.sleep(3)  # longer than the cell limit: waiting for the next run is not running
        assert not any("sleep\x00321" in _cmdline(pid) for pid in watch.process_tree(zygote.process.pid))  # died with its run
        second = runner.run([RunCell("c0", "answer", probe)])
        assert runner._zygote is zygote and second.stopped_by is None and first.stopped_by is None
        fresh = "True [False, False, False] False False False ['progress'] 1"
        assert _log(first)["c0"]["stdout"].split("\n")[:2] == [fresh, "True"]
        assert _log(second)["c0"]["stdout"].strip() == fresh
        first.remove()
        second.remove()
        assert not os.path.exists(first.folder) and os.path.isdir(zygote.folder)
    finally:
        runner.close()
    assert runner._zygote is None and zygote.process.poll() is not None and not os.path.exists(zygote.folder)


@needs_bwrap
def test_a_run_leaves_nothing_anywhere_for_the_runs_after_it(tmp_path):
    """The first run tries to leave a file in every folder it can see; the next runs, one
    of them under way at the same time, find none of them."""
    leave = (
        "import os\nleft = []\n"
        "for top, folders, _ in os.walk('/'):\n"
        "    folders[:] = [f for f in folders if os.path.join(top, f) not in ('/proc', '/sys')]\n"
        "    try:\n"
        "        open(os.path.join(top, 'left-by-a-run'), 'w').close()\n"
        "        left.append(top)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(sorted(left))\n"
    )
    find = (
        "import os\nfound = []\n"
        "for top, folders, files in os.walk('/'):\n"
        "    folders[:] = [f for f in folders if os.path.join(top, f) not in ('/proc', '/sys')]\n"
        "    found += [top for name in files if name == 'left-by-a-run']\n"
        "print(found)\n"
    )
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        first = runner.start([RunCell("c0", "answer", leave)])
        beside = runner.start([RunCell("c0", "answer", "import time\ntime.sleep(2)\n" + find)])  # the other slot
        written = _log(first.outcome())["c0"]["stdout"]
        later = runner.run([RunCell("c0", "answer", find)])  # on the first run's slot, emptied
        assert set(eval(written)) <= {"/scratch", "/scratch/out", "/tmp", "/dev/shm", "/keras"}, written
        assert "/scratch" in written and "/keras" in written
        assert _log(beside.outcome())["c0"]["stdout"].strip() == "[]"
        assert _log(later)["c0"]["stdout"].strip() == "[]"
    finally:
        runner.close()


@needs_bwrap
def test_a_run_cannot_raise_its_own_limits(tmp_path):
    """A run that could make a user namespace of its own could mount its cgroup's files
    there; as root outside, it could then raise its own limits (found in a security
    review). The sandbox's user is nobody outside, where the grader can arrange it: the
    files are not its (and a run may make no namespace any more, the test below)."""
    if os.geteuid() != 0 or rundisk.problem() is not None:
        missing_capability("the sandbox runs as nobody only when the grader is root and can mount its views")
    cell = (
        "import os, ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nuid = os.getuid()\n"
        "if libc.unshare(0x10000000 | 0x00020000 | 0x02000000) != 0:\n"
        "    print('no namespace')\n"
        "    raise SystemExit\n"
        "for name, text in (('setgroups', 'deny'), ('uid_map', f'0 {uid} 1'), ('gid_map', f'0 {uid} 1')):\n"
        "    open(f'/proc/self/{name}', 'w').write(text)\n"
        "for kind, options in (('pids', b'pids'), ('memory', b'memory'), ('unified', None)):\n"
        "    folder = f'/tmp/{kind}'\n    os.makedirs(folder)\n"
        "    libc.mount(b'none', folder.encode(), b'cgroup2' if options is None else b'cgroup', 0, options)\n"
        "    for name in ('pids.max', 'memory.limit_in_bytes', 'memory.max'):\n"
        "        if os.path.exists(f'{folder}/{name}'):\n"
        "            print('found', name)\n"
        "            try:\n"
        "                open(f'{folder}/{name}', 'w').write('max' if name != 'memory.limit_in_bytes' else str(64 << 30))\n"
        "                print('raised', name)\n"
        "            except OSError:\n"
        "                pass\n"
    )
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        outcome = runner.run([RunCell("c0", "answer", cell)])
        shown = _log(outcome)["c0"]["stdout"]
        assert ("found" in shown or "no namespace" in shown) and "raised" not in shown, shown
        outcome.remove()
        pending = runner.start([RunCell("c0", "answer", "import time\ntime.sleep(2)")])
        with open(f"/proc/{pending.pid}/status") as handle:  # the run's child, seen from the host
            ids = [line.split()[1:] for line in handle if line.startswith(("Uid:", "Gid:"))]
        assert ids == [[str(bwrap.SANDBOX_UID)] * 4] * 2, ids
        pending.outcome().remove()
    finally:
        runner.close()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as handle:
            return handle.read()
    except OSError:
        return ""


@needs_bwrap
def test_a_run_can_neither_see_nor_touch_the_zygote(tmp_path):
    """A run is process 1 of a PID namespace of its own, with no capability, and its /proc
    is that namespace's: it sees no other process (the zygote, the child that made it, a
    run beside it), cannot read their memory, environment or open files, nor signal them."""
    cell = (
        "import os, signal\n"
        "status = open('/proc/self/status').read()\n"
        "print(os.getpid(), sorted({line.split()[1] for line in status.splitlines() if line.startswith('Cap')}))\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit() and open(f'/proc/{p}/cmdline').read().startswith(('/venv/bin/python', '/usr'))"
        " and int(p) != int(os.readlink('/proc/self'))]\n"
        "refused = []\n"
        "for p in others:\n"
        "    for name in ('environ', 'mem', 'fd/0'):\n"
        "        try:\n"
        "            (os.readlink if name == 'fd/0' else lambda q: open(q, 'rb').read(1))(f'/proc/{p}/{name}')\n"
        "        except PermissionError:\n"
        "            refused.append(name)\n"
        "print(len(others), len(refused) == 3 * len(others))\n"
        "for pid in (2, 3):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGSTOP)\n"
        "        print('signalled', pid)\n"
        "    except ProcessLookupError:\n"
        "        pass\n"
    )
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        outcome = runner.run([RunCell("c0", "answer", cell)])
        lines = _log(outcome)["c0"]["stdout"].split("\n")
        assert lines[0] == "1 ['0000000000000000']", lines
        assert lines[1] == "0 True", lines  # its /proc is its own PID namespace's: nothing else in it
        assert "signalled" not in _log(outcome)["c0"]["stdout"]
        outcome.remove()
        again = runner.run([RunCell("c0", "answer", "print(6 * 7)")])  # the zygote is fine
        assert _log(again)["c0"]["stdout"].strip() == "42"
        again.remove()
    finally:
        runner.close()


@needs_bwrap
def test_a_run_that_signals_everything_it_can_stops_only_itself(tmp_path):
    """kill(0) signals the caller's process group, wherever its members live, and kill(-1)
    every process the caller may signal: from a run, neither reaches the zygote or the
    run under way beside it."""
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        beside = runner.start([RunCell("c0", "answer", "import time\ntime.sleep(10)\nprint(6 * 7)")])  # forked: it runs now
        hostile = runner.run([RunCell("c0", "answer", "import os, signal\nfor pid in (0, -1, 1, 2, 3):\n"
                                                      "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n")])
        hostile.remove()
        assert beside._alive()  # it was there all through the hostile run's signals
        outcome = beside.outcome()
        assert _log(outcome)["c0"]["stdout"].strip() == "42" and outcome.stopped_by is None and not outcome.host_fault
        assert runner._zygote is not None and runner._zygote.alive()
        outcome.remove()
    finally:
        runner.close()


@needs_bwrap
def test_a_run_can_make_no_namespace(tmp_path):
    """Namespaces are counted per user, across nested user namespaces, and every sandbox's
    user is the same outside: a run that made thousands would leave none for the run beside
    it (found in a security review). A run may make none."""
    cell = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "for flag in (0x10000000, 0x04000000, 0x00020000, 0x08000000):\n"
        "    print(libc.unshare(flag), ctypes.get_errno() in (1, 28))\n"
    )
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        outcome = runner.run([RunCell("c0", "answer", cell)])
        assert _log(outcome)["c0"]["stdout"].split("\n")[:4] == ["-1 True"] * 4
        outcome.remove()
    finally:
        runner.close()


@needs_bwrap
def test_a_run_whose_child_is_killed_is_stopped_whole_and_the_next_run_is_its_own(tmp_path):
    """The memory limit may pick the child that made the run (it holds the zygote's pages):
    the run's processes are then killed at once, not left running unwatched, and the next
    run is the zygote's new child, not a leftover of the last run."""
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        pending = runner.start([RunCell("c0", "answer", "import subprocess, time\nsubprocess.Popen(['sleep', '300'])\ntime.sleep(300)")])
        time.sleep(1)
        os.kill(pending.pid, signal.SIGKILL)
        outcome = pending.outcome()
        assert outcome.seconds < 30 and not pending.group.processes()
        outcome.remove()
        later = runner.run([RunCell("c0", "answer", "print(6 * 7)")])
        assert _log(later)["c0"]["stdout"].strip() == "42"
        later.remove()
    finally:
        runner.close()


@needs_bwrap
def test_a_zygote_that_died_is_replaced(tmp_path):
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        runner.run([RunCell("c0", "answer", "x = 1")]).remove()
        runner._zygote.process.kill()
        runner._zygote.process.wait()
        outcome = runner.run([RunCell("c0", "answer", "print(6 * 7)")])
        assert _log(outcome)["c0"]["stdout"].strip() == "42"
        outcome.remove()
    finally:
        runner.close()


def test_every_path_inside_is_a_neutral_one():
    places = bwrap.Places("/tmp/grader-run-x/disk/scratch", None, "/tmp/grader-run-x/disk/shm", "/tmp/grader-run-x/slots", "/root/python", "/work/checkout/.venv/lib/site", "/work/checkout/data")
    command = bwrap.bwrap_command(places, {}, {"/runner/run.py": 3, "/venv/pyvenv.cfg": 4})
    targets = [command[i + 2] for i, arg in enumerate(command) if arg in ("--bind", "--ro-bind")]
    python = bwrap.python_layout()
    neutral = ("/usr", "/bin", "/sbin", "/lib", "/etc/", "/python", "/venv/", "/data", "/keras/models", "/scratch", "/dev/shm", "/slots")
    assert targets and all(t.startswith(neutral) or t.startswith(python.base_inside) for t in targets), targets


@needs_bwrap
def test_the_mount_table_inside_shows_no_host_path(tmp_path):
    if rundisk.problem() is not None:
        missing_capability(f"no neutral views here: {rundisk.problem()}")
    _, log = run(tmp_path, "print(open('/proc/self/mountinfo').read())\nimport sys\nprint(sys.prefix, sys.executable)")
    table = log["c0"]["stdout"]
    python = bwrap.python_layout()
    for host in (os.path.dirname(os.path.dirname(os.path.dirname(sandbox.__file__))), str(tmp_path), sys.prefix,
                 os.path.realpath(sys.prefix), python.base, "grader-run-", tempfile.gettempdir() + "/"):
        assert host not in table, host
    assert "/venv /venv/bin/python" in table


def test_sweeping_stale_cgroups_spares_one_just_made():
    # Another grader (or worker) makes a run's cgroup a moment before its run enters it:
    # a sweep at that moment must not take it away.
    from grader.sandbox import cgroups

    group = cgroups.RunCgroup(64, 2**30)
    if not group.active:
        missing_capability("no cgroups can be made here")
    try:
        cgroups.sweep_stale()
        assert all(os.path.isdir(path) for path in group.paths.values())
        cgroups.sweep_stale(older_than=0)
        assert not any(os.path.isdir(path) for path in group.paths.values())
    finally:
        group.destroy()


@needs_bwrap
def test_a_traceback_names_the_assignments_cell_not_the_run_number(tmp_path):
    _, log = run(tmp_path, "x = 1", "y = 2\nraise ValueError('wrong')", "z = (")
    assert "Cell 'c1', line 2" in log["c1"]["error"]["traceback"] and "In[" not in log["c1"]["error"]["traceback"]
    assert log["c2"]["error"]["name"] == "SyntaxError" and "In[" not in log["c2"]["error"]["traceback"]


def test_run_folders_left_by_a_killed_grader_are_swept_after_a_day(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, new = tmp_path / (sandbox.RUN_PREFIX + "old"), tmp_path / (sandbox.RUN_PREFIX + "new")
    for folder in (old, new):
        (folder / "scratch").mkdir(parents=True)
    os.utime(old, (time.time() - 2 * 24 * 3600,) * 2)
    assert sandbox.sweep_stale_runs() == 1
    assert not old.exists() and new.exists()


@pytest.mark.parametrize("now, expected", [
    (watch.Mark(4, 2.9, 0.5), None),  # computed most of the time, under its limit
    (watch.Mark(10, 3.1, 0), "cell_timeout"),  # over its CPU time
    (watch.Mark(10, 0.1, 0), "wall_clock"),  # neither computed nor waited for 10 s: idle
    (watch.Mark(10, 0.1, 9), None),  # waited for a CPU most of the time: not idle
    (watch.Mark(16, 0.5, 15), "host_busy"),  # waited past the backstop (5 x 3 s)
    (watch.Mark(16, 0.5, 4), "wall_clock"),  # idle for longer than the limit comes first
])
def test_which_limit_a_run_is_past(now, expected):
    start = watch.Mark(0, 0, 0)
    assert watch.over_limit(Limits(cell_timeout=3, run_timeout=60), start, start, now) == expected


def test_run_folders_with_mounts_and_deep_trees_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = tmp_path / (sandbox.RUN_PREFIX + "mounted")
    (old / "disk").mkdir(parents=True)
    (old / "scratch").mkdir()
    try:
        if rundisk.problem() is None:
            rundisk.mount_disk(str(old / "disk"), 1 << 20, 5000)
        make_deep_tree(old / "disk", 3000)
        make_deep_tree(old / "scratch", 3000)  # a run without a disk of its own
        os.utime(old, (time.time() - 2 * 24 * 3600,) * 2)
        assert sandbox.sweep_stale_runs() == 1
        assert not old.exists() and rundisk.mounts_under(str(tmp_path)) == []
    finally:
        rundisk.release(str(tmp_path))


def test_the_mounts_of_a_dead_graders_run_are_swept_at_once_and_a_live_ones_kept(tmp_path, monkeypatch):
    if rundisk.problem() is not None:
        missing_capability(f"no disk of the run's own here: {rundisk.problem()}")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead, live = tmp_path / (sandbox.RUN_PREFIX + "dead"), tmp_path / (sandbox.RUN_PREFIX + "live")
    try:
        for folder in (dead, live):
            folder.mkdir()
            lock = zygote.hold(str(folder))
            rundisk.mount_disk(str(folder / "disk"), 1 << 20, 100)
            if folder == dead:
                os.close(lock)  # as when its grader was killed
        assert sandbox.sweep_stale_runs() == 1
        assert not dead.exists() and rundisk.mounts_under(str(live)) == [str(live / "disk")]
    finally:
        rundisk.release(str(tmp_path))
        os.close(lock)


def test_a_runs_cgroups_are_named_after_its_temporary_folder(tmp_path):
    from grader.sandbox import cgroups

    group = cgroups.RunCgroup(64, 2**30, sandbox.cgroup_tag(str(tmp_path)))
    try:
        assert group.name.startswith(f"grader-{sandbox.cgroup_tag(str(tmp_path))}-")
    finally:
        group.destroy()


def test_the_zygote_is_stopped_once_a_batchs_queue_has_ended(monkeypatch):
    """A runner with `ahead` starts its zygote at once (it imports while the grader loads
    the rest) and keeps it between runs; a batch's workers hear when the queue is empty for
    good, and the zygote stops once the last run ends. A runner without `ahead` stops it
    after its run."""
    made = []

    class Zygote:
        def __init__(self, plan):
            made.append(self)
            self.discarded = False
            self.free = []

        def alive(self):
            return not self.discarded

        def discard(self):
            self.discarded = True

        def wipe(self, slot):
            pass

    monkeypatch.setattr(runs, "Zygote", Zygote)
    runner = sandbox.Runner(plan="a plan", ahead=True)
    assert len(made) == 1 and runner.started
    runner._running = 1
    runner._ended(made[0], 0)  # a run ended, more may come: kept
    assert runner.started
    runner._running = 1
    runner.expect_more(False)  # the queue is empty for good, while its last run is under way
    assert runner.started
    runner._ended(made[0], 0)  # the last run ended: stopped
    assert made[0].discarded and not runner.started
    runner.expect_more(True)  # a server's queue: a new upload, and a new zygote for it
    assert runner._ready() is made[1] and len(made) == 2
    runner.close()
    assert made[1].discarded
    once = sandbox.Runner(plan="a plan")
    assert len(made) == 2  # started only when asked for a run
    once._ready()
    once._running = 1
    once._ended(made[2], 0)
    assert made[2].discarded


@needs_bwrap
def test_a_cell_that_fills_its_memory_is_stopped_and_the_limit_named(tmp_path):
    outcome, _ = run(tmp_path, "chunks = []\nwhile True:\n    chunks.append(b'x' * 2**26)",
                     limits=Limits(cell_timeout=30, run_timeout=60, memory_mb=1024))
    probe = cgroups.RunCgroup(1, 2**30)
    has_cgroup = "memory" in probe.paths or "v2" in probe.paths
    probe.destroy()
    if not has_cgroup:
        missing_capability("no memory cgroup here: the address-space limit stops it as a MemoryError")
    assert outcome.stopped_by == "memory" and "the memory limit (1 GiB) was reached" in outcome.limit_message


@needs_bwrap
def test_a_lock_one_run_holds_on_the_weights_or_data_blocks_no_other_run(tmp_path):
    """Each run gets its own copy of the pretrained weights, read-only; HDF5 takes no lock.
    A run that holds an exclusive lock on every file it can read leaves the run beside it
    free to open, lock and load its own weights, and the data."""
    (tmp_path / "models").mkdir(exist_ok=True)
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "models" / "weights.h5", "w") as handle:
        handle["w"] = np.arange(6.0)
    runner = sandbox.Runner(_plan(tmp_path, limits=Limits(cell_timeout=30, run_timeout=60)), ahead=True)
    holder = (
        "import fcntl, glob, os, time\nheld = []\n"
        "for path in glob.glob('/keras/models/*') + glob.glob('/data/*'):\n"
        "    handle = open(path, 'rb')\n    fcntl.flock(handle, fcntl.LOCK_EX)\n    held.append(handle)\n"
        "open('/scratch/locked', 'w').write(str(len(held)))\ntime.sleep(60)"
    )
    opener = (
        "import fcntl, h5py, os\npath = '/keras/models/weights.h5'\n"
        "with open(path, 'rb') as handle:\n    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "print(h5py.File(path, 'r')['w'][()].tolist(), os.environ['HDF5_USE_FILE_LOCKING'])\n"
        "for name in os.listdir('/data'):\n    open(os.path.join('/data', name), 'rb').read()\n"
        "for change in (lambda: open(path, 'ab'), lambda: os.chmod(path, 0o666)):\n"
        "    try:\n        change()\n    except OSError as error:\n        print(type(error).__name__)"
    )
    try:
        holding = runner.start([RunCell("c0", "answer", holder)])
        marker = os.path.join(holding.scratch, "locked")
        assert watch_for(lambda: os.path.exists(marker)), "the first run never took its locks"
        assert open(marker).read() == "2"  # the weights and the one data file
        outcome = runner.run([RunCell("c0", "answer", opener)])
        log = _log(outcome)
        assert log["c0"]["status"] == "ok", log["c0"]
        printed = log["c0"]["stdout"].split("\n")
        assert printed[0] == "[0.0, 1.0, 2.0, 3.0, 4.0, 5.0] FALSE"
        assert printed[1:3] in (["PermissionError"] * 2, ["OSError"] * 2, ["PermissionError", "OSError"])  # its copy is read-only
        holding.cancel()
        outcome.remove()
    finally:
        runner.close()
    # the staged file the runs were given copies of is untouched and unlocked
    with open(tmp_path / "models" / "weights.h5", "rb") as handle:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def watch_for(condition, seconds=120.0) -> bool:
    """Wait until `condition()` holds (True), or give up after `seconds` (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@needs_bwrap
def test_a_thread_left_running_cannot_write_after_the_export(tmp_path):
    """A cell starts a thread that keeps rewriting the runner's export.json (found through
    /proc/self/fd): the export is written by a child of its own once every other process of
    the run is stopped, and the run is then killed, so what the grader reads is the export's."""
    source = ("import os, threading\n"
              "def forge():\n"
              "    while True:\n"
              "        for fd in os.listdir('/proc/self/fd'):\n"
              "            try:\n"
              "                if os.readlink(f'/proc/self/fd/{fd}').endswith('export.json'):\n"
              "                    os.ftruncate(int(fd), 0)\n"
              "                    os.pwrite(int(fd), b'{\"found\": true, \"forged\": true}', 0)\n"
              "            except OSError:\n"
              "                pass\n"
              "threading.Thread(target=forge, daemon=True).start()\n"
              "model = 42")
    for _ in range(3):
        outcome = _run_outcome(tmp_path, source)
        export = json.load(open(os.path.join(outcome.out_dir, "export.json")))
        assert "forged" not in export and export["problem"] == "`model` is a int, not a Keras model", export
        assert export["integrity"]["threads"] == 1 and outcome.exit_code == 0


@needs_bwrap
def test_a_run_that_closes_its_channel_to_the_watcher_is_ended_and_its_export_not_believed(tmp_path):
    """Without its channel the watcher could not stop the run's threads for the export: the
    run is killed there and then, and says so ("closed"); an honest run says "export"."""
    close = ("import os\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n"
             "        if os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'):\n            os.close(int(fd))\n"
             "    except OSError:\n        pass\nmodel = 1")
    outcome = _run_outcome(tmp_path, close)
    assert outcome.watcher == "closed" and "export.json" not in os.listdir(outcome.out_dir)
    assert _run_outcome(tmp_path, "model = 1").watcher == "export"


@needs_bwrap
def test_the_runners_functions_rewritten_by_a_cell_are_put_back_for_the_export(tmp_path):
    source = ("import gc, types\nfor thing in gc.get_objects():\n"
              "    if isinstance(thing, types.FunctionType) and thing.__name__ in ('export_apart', 'export_model', 'seal'):\n"
              "        thing.__code__ = (lambda *args, **kwargs: None).__code__\nmodel = 42")
    outcome = _run_outcome_cells(tmp_path, [source, "x = 1"])
    export = json.load(open(os.path.join(outcome.out_dir, "export.json")))
    assert export["problem"] == "`model` is a int, not a Keras model"
    assert {"runner.export_apart", "runner.export_model", "runner.seal"} <= set(export["integrity"]["replaced"])
    # the runner's seal, rewritten before the first cell ended, sealed nothing: no record (the
    # grader then leaves those cells out of the log, and the scorecard says why)
    assert outcome.witness == ((), ()) and outcome.watcher == "export"
