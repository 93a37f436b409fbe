"""The suite's own arrangement: on several pytest workers, each test file's tests stay on
one worker and the files that read the session's `graded` batch share one (see
tests/conftest.py), so no batch is graded twice."""

import os

import pytest


def test_a_test_file_is_one_group_on_the_workers(request):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("the suite runs on one process here (-n 0)")
    assert request.node.nodeid.endswith("@tests/test_suite_groups.py")


def test_the_files_that_read_the_sessions_batch_are_one_group(request):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("the suite runs on one process here (-n 0)")
    groups = {item.nodeid.split("::")[0]: item.nodeid.rsplit("@", 1)[-1] for item in request.session.items}
    if not {"tests/test_grading.py", "tests/test_reports.py", "tests/test_sandbox.py"} <= set(groups):
        pytest.skip("only part of the suite was collected")
    assert groups["tests/test_grading.py"] == groups["tests/test_reports.py"] == "graded"
    assert groups["tests/test_sandbox.py"] == "tests/test_sandbox.py"


def test_a_missing_capability_is_a_loud_skip_and_under_the_ci_switch_a_failure(monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "STRICT", False)
    with pytest.raises(pytest.skip.Exception, match="MISSING CAPABILITY: no cgroups"):
        conftest.missing_capability("no cgroups")
    monkeypatch.setattr(conftest, "STRICT", True)
    with pytest.raises(pytest.fail.Exception, match="lacks what the grader relies on: no cgroups"):
        conftest.missing_capability("no cgroups")


def test_ci_runs_the_readmes_test_command_with_the_switch_on():
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".ci", "run")) as handle:
        lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    assert "export GRADER_TEST_STRICT=1" in lines and lines[-1] == "./dev test"
