"""The third round's attacks that need no batch: Gradescope without a sandbox, the ports a
cluster opens, the forwarded headers the workshop server believes. (The notebooks of the
round are graded with the others in test_attacks.py.)"""

import json
import os

import pytest

from conftest import ROOT
from grader import batch, gradescope
from grader.sandbox import bwrap
from grader.scale import cluster as cluster_mod
from grader.serve.start import proxy_settings

REWRITES_RESULTS = """import json, os, time
for _ in range(600):  # wait for the autograder's results.json, then make it full marks
    if os.path.exists('/autograder/results/results.json'):
        json.dump({'score': 100}, open('/autograder/results/results.json', 'w'))
        break
    time.sleep(0.1)"""


def test_gradescope_without_a_sandbox_runs_nothing_and_says_so(manifest, released, tmp_path, monkeypatch):
    """Where the container cannot make the sandbox, the notebook that would rewrite
    results.json as the grader's user is never run: the student reads why, with 0 points."""
    from grader.config import scenarios

    _, playground = released
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "lab.ipynb").write_bytes(scenarios.with_answer(playground, "model", REWRITES_RESULTS))
    monkeypatch.setattr(bwrap, "bubblewrap_problem", lambda: "user namespaces are not allowed here")

    def graded(*args, **kwargs):
        raise AssertionError("a notebook was graded without a sandbox")

    monkeypatch.setattr(batch, "grade", graded)
    results = tmp_path / "results.json"
    payload = gradescope.run(manifest, str(submission), str(results))
    assert json.loads(results.read_text()) == payload
    assert payload["score"] == 0 and payload["visibility"] == "visible" and "tests" not in payload
    assert "was not graded" in payload["output"] and "user namespaces are not allowed here" in payload["output"]
    assert "never runs a notebook without one" in payload["output"]


def test_a_local_cluster_listens_on_loopback_only():
    """Its dashboard shows task keys (students' names) and logs: it, the scheduler and the
    workers bind 127.0.0.1."""
    cluster = cluster_mod.local_cluster(1, 0, 1)
    try:
        addresses = [cluster.scheduler_address, *(w.address for w in cluster.workers.values() if w.address)]
        assert addresses and all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
        dashboard = cluster.scheduler.http_server.port, cluster.dashboard_link
        assert "127.0.0.1" in cluster.dashboard_link, dashboard
        bound = {socket.getsockname()[0] for server in cluster.scheduler.http_server._sockets.values() for socket in [server]}
        assert bound <= {"127.0.0.1"}, bound
    finally:
        cluster.close()


def test_forwarded_headers_are_believed_only_from_the_proxies_named():
    import uvicorn

    async def app(scope, receive, send):
        pass

    nobody = uvicorn.Config(app, **proxy_settings(""))
    nobody.load()
    assert nobody.proxy_headers is False and type(nobody.loaded_app).__name__ != "ProxyHeadersMiddleware"
    named = uvicorn.Config(app, **proxy_settings(" 127.0.0.1 "))
    named.load()
    assert named.proxy_headers is True and named.forwarded_allow_ips == "127.0.0.1"
    assert type(named.loaded_app).__name__ == "ProxyHeadersMiddleware"


@pytest.mark.slow
def test_a_cell_added_above_that_ends_the_run_and_a_notebook_of_thousands_of_cells_are_the_students(tmp_path):
    """Found after the round: a cell added above the answer that ended the run with
    os._exit was taken for the assignment's failure (the grader's fault, never stored, so the
    notebook was never graded); a notebook of 1,100 cells ran the runner out of descriptors
    (the grader's fault too). Both are the student's verdicts now, kept, each saying why.
    Graded with the tf.data lab: nothing to train."""
    import nbformat

    from grader.config import labs, manifest as manifest_mod, release, scenarios
    from grader.grading.pipeline import MAX_RUN_CELLS
    from grader.run import Options
    loaded = manifest_mod.load(os.path.join(ROOT, "assignments", "keras_flowers_tfdata"))
    record, playground = release.build(loaded)
    solution = nbformat.reads(scenarios.make(record, playground, ["solution.ipynb"], labs.scenarios(loaded))["solution.ipynb"], 4)
    answer = next(i for i, cell in enumerate(solution.cells) if cell.get("id") == loaded.answer_cells[0])

    def with_cells(at, sources):
        made = [nbformat.v4.new_code_cell(source, id=f"added-{n}") for n, source in enumerate(sources)]
        return nbformat.writes(nbformat.from_dict({**solution, "cells": [*solution.cells[:at], *made, *solution.cells[at:]]}))

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "exit_above_the_answer.ipynb").write_text(with_cells(answer, ["import os\nos._exit(3)"]))
    (folder / "exit_in_the_first_cell.ipynb").write_text(with_cells(0, ["import os\nos._exit(3)"]))
    (folder / "many_cells.ipynb").write_text(with_cells(answer + 1, [f"x{n} = {n}" for n in range(1100)]))
    graded = batch.grade(loaded, [str(folder)], Options(out_dir=str(tmp_path / "out"), quiet=True))
    results = {r.submission: r for r in graded.results}
    assert {name: (r.status, r.score, r.owner.value) for name, r in results.items()} == {
        "exit_above_the_answer": ("graded", 0.0, "student"), "exit_in_the_first_cell": ("graded", 0.0, "student"),
        "many_cells": ("ungradable", 0.0, "student")}
    said = {name: next(c for c in results[name].checks if c.id == "runs").message for name in results}
    # right above the answer, a cell is the student's part of it; at the top, one added above it
    assert "the run ended in the middle of the cell you added (exit code 3)" in said["exit_above_the_answer"]
    assert ("the run ended in the middle of the cell you added above the answer (the one that begins `import os`, exit code 3), "
            "so the answer never ran: take that cell out") in said["exit_in_the_first_cell"]
    assert f"1106 cells to run, more than the {MAX_RUN_CELLS}" in results["many_cells"].reason
