"""Inside the sandbox: no network, no view of the assignment, limits enforced from outside."""

import json
import socket
import threading

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


def test_private_tmp_is_mounted_before_binds_that_live_under_tmp():
    mounts = sandbox.Mounts(data_dir="/tmp/x/data", keras_models="/tmp/x/models")
    command = sandbox.bwrap_command(mounts, "/tmp/x/scratch", {})
    tmpfs = command.index("/tmp", command.index("--tmpfs"))
    assert command[tmpfs - 3] == "--size"  # a bounded /tmp
    binds = [i for i, arg in enumerate(command) if arg in ("--bind", "--ro-bind") and command[i + 1].startswith("/tmp")]
    assert binds and all(i > tmpfs for i in binds)
