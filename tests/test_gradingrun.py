"""The grading loop (grader/run.py) against a fake pool of workers, in process: what it
hands to the workers (each content once; nothing the gradebook keeps, unless asked to
grade again), what it keeps (the student's outcomes, never the grader's own failures),
and when it stops (the grader failing notebook after notebook while the sandbox is
broken). Fast: nothing is run, only the loop's own decisions."""

import json
import os
import subprocess
import sys

import nbformat
import pytest

from grader import preflight, run as run_mod
from grader.config import manifest as manifest_mod, release
from grader.faults import GraderError, Owner
from grader.results import SubmissionResult
from grader.scale.executors import Done
from grader.store import gradebook
from reference.hashing import file_sha256
from conftest import ROOT

TINY = os.path.join(ROOT, "tests", "fixtures", "tiny_assignment")


class FakePool:
    """Workers that grade without running: each work's score is looked up in `scores` by
    its file's answer; `owners` makes some the grader's (or the instructor's) outcome."""

    peak_bytes = 0

    def __init__(self, owners=None):
        self.given: list[list[str]] = []  # the works' names, per call
        self.owners = owners or {}

    def grade(self, works):
        works = list(works)
        self.given.append([work.name for work in works])
        for work in works:
            owner = self.owners.get(work.name, Owner.STUDENT)
            yield Done(work, SubmissionResult("tiny", "1", work.name, os.path.basename(work.path), work.key,
                                              "graded" if owner is Owner.STUDENT else "ungradable", 1.0, 1.0, owner=owner))

    def use(self, context):
        pass

    def __exit__(self, *exc):
        pass


class Checked:
    solution = None  # the scorecards then show no reference


def notebooks(folder, answers: dict[str, str]) -> dict[str, str]:
    """Tiny notebooks, one per student (student -> its answer): student -> path."""
    _, playground = release.build(manifest_mod.load(TINY))
    folder.mkdir(exist_ok=True)
    paths = {}
    for student, answer in answers.items():
        notebook = nbformat.from_dict(playground)
        for cell in notebook.cells:
            if cell.get("id") == "answer":
                cell.source = answer
        paths[student] = str(folder / f"{student}.ipynb")
        nbformat.write(notebook, paths[student])
    return paths


def entries(paths: dict[str, str]) -> list[run_mod.Entry]:
    return [run_mod.Entry(gradebook.Stored(student, f"subs/{student}.ipynb", file_sha256(path), 0.0, "file", True), path)
            for student, path in paths.items()]


def graded(tmp_path, paths, pool, fresh=False):
    """One run over `paths` with `pool` as its workers: the settled outcomes by student."""
    options = run_mod.Options(out_dir=str(tmp_path / "out"), quiet=True, allow_unsandboxed=True, jobs=1)
    with run_mod.GradingRun(manifest_mod.load(TINY), options) as run:
        run.checked, run._pool = Checked(), pool
        return {settled.entry.stored.student: settled for settled in run.grade(entries(paths), fresh=fresh)}


def kept_rows(tmp_path) -> int:
    book = gradebook.Gradebook(str(tmp_path / "out" / "gradebook.sqlite"))
    try:
        return book.connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        book.close()


def test_one_content_is_graded_once_for_every_student_who_handed_it_in(tmp_path):
    paths = notebooks(tmp_path / "subs", {"ada": "answer = 1", "bob": "answer = 1", "cy": "answer = 2"})
    pool = FakePool()
    settled = graded(tmp_path, paths, pool)
    assert len(pool.given) == 1 and len(pool.given[0]) == 2  # two contents, three students
    assert set(settled) == {"ada", "bob", "cy"} and all(s.graded for s in settled.values())
    assert settled["ada"].result.sha256 == settled["bob"].result.sha256 != settled["cy"].result.sha256
    assert settled["bob"].result.submission == "bob"  # each student's own, not the one it was graded as
    assert kept_rows(tmp_path) == 2
    for student, outcome in settled.items():
        assert os.path.isfile(os.path.join(outcome.folder, "scorecard.html")), student


def test_a_rerun_hands_the_workers_nothing_the_gradebook_keeps_and_fresh_grades_it_again(tmp_path):
    paths = notebooks(tmp_path / "subs", {"ada": "answer = 1", "bob": "answer = 2"})
    graded(tmp_path, paths, FakePool())
    again = FakePool()
    settled = graded(tmp_path, paths, again)
    assert again.given == [] and not any(s.graded for s in settled.values())  # the pool was never asked
    assert {s.result.score for s in settled.values()} == {1.0}
    paths.update(notebooks(tmp_path / "subs", {"cy": "answer = 3"}))
    one_more = FakePool()
    graded(tmp_path, paths, one_more)
    assert one_more.given == [["cy"]]  # resumed: only what is new
    fresh = FakePool()
    assert all(s.graded for s in graded(tmp_path, paths, fresh, fresh=True).values())
    assert sorted(fresh.given[0]) == ["ada", "bob", "cy"]


def test_the_graders_own_failure_and_a_lab_cells_are_shown_but_never_kept(tmp_path):
    paths = notebooks(tmp_path / "subs", {"ada": "answer = 1", "bob": "answer = 2", "cy": "answer = 3"})
    pool = FakePool({"ada": Owner.GRADER, "bob": Owner.INSTRUCTOR})
    settled = graded(tmp_path, paths, pool)
    assert [settled[s].kept for s in ("ada", "bob", "cy")] == [False, False, True]
    assert kept_rows(tmp_path) == 1
    rerun = FakePool()
    graded(tmp_path, paths, rerun)
    assert sorted(rerun.given[0]) == ["ada", "bob"]  # tried again; cy's is kept


@pytest.mark.parametrize("problem, stops", [("bwrap: cannot make namespaces", True), ("", False)])
def test_three_failures_of_the_graders_own_in_a_row_stop_the_run_when_the_sandbox_is_broken(tmp_path, monkeypatch, problem, stops):
    asked = []
    monkeypatch.setattr(preflight, "sandbox_problem", lambda context: asked.append(1) or problem)
    students = {f"s{i}": f"answer = {i}" for i in range(4)}
    paths = notebooks(tmp_path / "subs", students)
    pool = FakePool({name: Owner.GRADER for name in students})
    if stops:
        with pytest.raises(GraderError, match="3 notebooks in a row.*" + problem):
            graded(tmp_path, paths, pool)
        assert asked == [1]
    else:
        assert len(graded(tmp_path, paths, pool)) == 4  # the solution still runs: the notebooks' own doing
        assert asked == [1]  # asked after the third, counted again from there
    assert kept_rows(tmp_path) == 0


def test_a_student_outcome_between_failures_restarts_the_count(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "sandbox_problem", lambda context: pytest.fail("asked although no three failed in a row"))
    students = {f"s{i}": f"answer = {i}" for i in range(5)}
    paths = notebooks(tmp_path / "subs", students)
    pool = FakePool({"s0": Owner.GRADER, "s1": Owner.GRADER, "s3": Owner.GRADER, "s4": Owner.GRADER})
    assert len(graded(tmp_path, paths, pool)) == 5


def test_a_process_started_by_a_large_one_reports_its_own_peak_not_its_starters():
    """The batch's `parent_peak_rss_mb` is the grader's own: a grader started from a process
    holding 400 MiB (a notebook kernel, a benchmark) did not hold them (getrusage's
    ru_maxrss says it did: Linux keeps the replaced program's peak across exec)."""
    script = ("import json, resource, subprocess, sys; held = bytearray(400 * 2**20); held[::4096] = b'x' * len(held[::4096]); "
              "child = ('import json, resource, sys; sys.path.insert(0, sys.argv[1]); from grader.scale import memory; '"
              "         'print(json.dumps([memory.peak(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))'); "
              "print(subprocess.run([sys.executable, '-c', child, sys.argv[1]], capture_output=True, text=True, check=True).stdout)")
    own, inherited = json.loads(subprocess.run([sys.executable, "-c", script, ROOT], capture_output=True, text=True, check=True).stdout)
    assert inherited > 400 * 2**20  # what the kernel's rusage reports: the starter's
    assert own < 100 * 2**20, own
