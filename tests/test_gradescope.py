"""The Gradescope runner: it grades only in a sandbox, and says so when it cannot make one."""

import json

from grader import batch, gradescope, sandbox


def test_without_a_sandbox_nothing_runs_and_the_student_is_told(manifest, tmp_path, monkeypatch):
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "lab.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    monkeypatch.setattr(sandbox, "bubblewrap_problem", lambda: "user namespaces are not allowed here")

    def graded(*args, **kwargs):
        raise AssertionError("a notebook was graded without a sandbox")

    monkeypatch.setattr(batch, "grade", graded)
    results = tmp_path / "results.json"
    payload = gradescope.run(manifest, str(submission), str(results))
    assert json.loads(results.read_text()) == payload
    assert payload["score"] == 0 and payload["visibility"] == "visible" and "tests" not in payload
    assert "was not graded" in payload["output"] and "user namespaces are not allowed here" in payload["output"]
    assert "never runs a notebook without one" in payload["output"]
