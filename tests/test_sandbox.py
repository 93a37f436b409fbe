"""Inside the sandbox: no network, no view of the assignment, limits enforced from outside."""

import json
import os
import socket
import threading
import time

import pytest

from grader import sandbox
from grader.manifest import Limits
from grader.match import RunCell
from conftest import ASSIGNMENT

needs_bwrap = pytest.mark.skipif(sandbox.bubblewrap_problem() is not None, reason="bubblewrap cannot run here")


def run(tmp_path, *sources, limits=Limits(cell_timeout=30, run_timeout=60)):
    cells = [RunCell(f"c{i}", "answer", s) for i, s in enumerate(sources)]
    (tmp_path / "models").mkdir(exist_ok=True)
    mounts = sandbox.Mounts(data_dir=str(tmp_path / "models"), keras_models=str(tmp_path / "models"))
    outcome = sandbox.run(cells, str(tmp_path / "work"), mounts, limits, 96, 32, sandboxed=True)
    log = json.load(open(f"{outcome.out_dir}/log.json"))
    return outcome, {entry["key"]: entry for entry in log}


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


@needs_bwrap
def test_an_endless_cell_is_stopped_and_named(tmp_path):
    outcome, _ = run(tmp_path, "x = 1", "while True:\n    pass", limits=Limits(cell_timeout=3, run_timeout=60))
    assert outcome.stopped_by == "cell_timeout" and outcome.stopped_cell == "c1"
    assert outcome.seconds < 20


@needs_bwrap
def test_output_is_capped_head_and_tail(tmp_path):
    _, log = run(tmp_path, "for i in range(200000):\n    print('line', i)")
    out = log["c0"]["stdout"]
    assert out.startswith("line 0\n") and out.rstrip().endswith("line 199999") and "characters cut" in out
    assert len(out) < 2 * Limits().output_bytes + 100


def _plan(tmp_path, limits=Limits(cell_timeout=30, run_timeout=60), warm=()):
    (tmp_path / "models").mkdir(exist_ok=True)
    mounts = sandbox.Mounts(data_dir=str(tmp_path / "models"), keras_models=str(tmp_path / "models"))
    return sandbox.Plan(mounts, limits, 96, 32, True, warm)


def _log(outcome):
    return {entry["key"]: entry for entry in json.load(open(f"{outcome.out_dir}/log.json"))}


@needs_bwrap
def test_a_sandbox_started_ahead_serves_one_submission_and_has_imported_the_modules(tmp_path):
    runner = sandbox.Runner(_plan(tmp_path, limits=Limits(cell_timeout=2, run_timeout=60), warm=("decimal",)), ahead=True)
    probe = "import sys, os\nprint('decimal' in sys.modules, os.path.exists('/tmp/mark'), os.listdir('/scratch/out'), os.nice(0))"
    try:
        first = runner.run([RunCell("c0", "answer", probe + "\nopen('/tmp/mark', 'w').write('x')\nopen('/scratch/mark', 'w').write('x')")])
        standby = runner._standby
        assert standby is not None and standby.process.poll() is None  # started, waiting for its submission
        assert os.getpriority(os.PRIO_PROCESS, standby.process.pid) == os.getpriority(os.PRIO_PROCESS, 0) + sandbox.STANDBY_NICE
        time.sleep(3)  # longer than the cell limit: waiting is not running
        second = runner.run([RunCell("c0", "answer", probe + "\nprint(os.path.exists('/scratch/mark'))")])
        assert second.folder == standby.folder and second.stopped_by is None
        assert _log(first)["c0"]["stdout"].split()[:2] == ["True", "False"]
        # the second run: modules already imported, nothing of the first run's /tmp or scratch,
        # and back at normal priority once given its cells
        assert _log(second)["c0"]["stdout"].split() == ["True", "False", "['progress']", str(os.nice(0)), "False"]
        first.remove()
        second.remove()
        assert not os.path.exists(first.folder)
        waiting = runner._standby
    finally:
        runner.close()
    assert runner._standby is None and waiting.process.poll() is not None and not os.path.exists(waiting.folder)


@needs_bwrap
def test_a_standby_that_died_is_replaced(tmp_path):
    runner = sandbox.Runner(_plan(tmp_path), ahead=True)
    try:
        runner.run([RunCell("c0", "answer", "x = 1")]).remove()
        runner._standby.process.kill()
        runner._standby.process.wait()
        outcome = runner.run([RunCell("c0", "answer", "print(6 * 7)")])
        assert _log(outcome)["c0"]["stdout"].strip() == "42"
        outcome.remove()
    finally:
        runner.close()


def test_private_tmp_is_mounted_before_binds_that_live_under_tmp():
    mounts = sandbox.Mounts(data_dir="/tmp/x/data", keras_models="/tmp/x/models")
    command = sandbox.bwrap_command(mounts, "/tmp/x/scratch", {})
    tmpfs = command.index("/tmp", command.index("--tmpfs"))
    assert command[tmpfs - 3] == "--size"  # a bounded /tmp
    binds = [i for i, arg in enumerate(command) if arg in ("--bind", "--ro-bind") and command[i + 1].startswith("/tmp")]
    assert binds and all(i > tmpfs for i in binds)


def test_sweeping_stale_cgroups_spares_one_just_made():
    # Another grader (or worker) makes a run's cgroup a moment before its run enters it:
    # a sweep at that moment must not take it away.
    from grader import cgroups

    group = cgroups.RunCgroup(64, 2**30)
    if not group.active:
        pytest.skip("no cgroups can be made here")
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
    monkeypatch.setattr(sandbox.tempfile, "tempdir", str(tmp_path))
    old, new = tmp_path / (sandbox.RUN_PREFIX + "old"), tmp_path / (sandbox.RUN_PREFIX + "new")
    for folder in (old, new):
        (folder / "scratch").mkdir(parents=True)
    os.utime(old, (time.time() - 2 * 24 * 3600,) * 2)
    assert sandbox.sweep_stale_runs() == 1
    assert not old.exists() and new.exists()
