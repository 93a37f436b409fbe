"""The grading run's pages: each submission's written once, and another of its student's
again only when the class's facts on it changed (a newer submission now counts)."""

import dataclasses
import hashlib
import os

from grader import run
from grader.config.manifest import ClassRules
from grader.reports import classview
from grader.reports.render_notebook import Rendering
from grader.results import CheckResult, SubmissionResult
from grader.store import gradebook

FACTS = classview.ClassFacts("tiny", "1", "Tiny", "fp", (("runs", "Runs", 1.0),), ClassRules())


class Written:
    """What _Pages needs of a run, with every scorecard it writes noted: (attempt, counts)."""

    checked = None

    def __init__(self, folder):
        self.out_dir, self.facts, self._written, self.pages = str(folder), FACTS, {}, []
        self.book = gradebook.Gradebook(str(folder / "gradebook.sqlite"))

    def write_pages(self, result, folder, about):
        self.pages.append((os.path.basename(folder), about["counts"] if about else None))
        self._written[folder] = about


def entry(folder, student: str, name: str, at: float) -> run.Entry:
    path = folder / f"{name}.ipynb"
    path.write_text(name)
    digest = hashlib.sha256(name.encode()).hexdigest()
    return run.Entry(gradebook.Stored(student, f"{name}.ipynb", digest, at, "file name", True), str(path))


def graded(handed: run.Entry) -> SubmissionResult:
    check = CheckResult("runs", "Runs", "passed", 1.0, 1.0, "ran")
    return SubmissionResult("tiny", "1", handed.stored.student, os.path.basename(handed.path), handed.stored.sha256, "graded", 1.0, 1.0, (check,))


def grade(fake: Written, *entries: run.Entry) -> list[run.Settled]:
    """One `grade` call of the run, as it writes pages: record, settle each in turn."""
    for handed in entries:
        fake.book.record(FACTS.name, handed.stored)
    pages = run._Pages(fake, list(entries))
    outcomes = []
    for handed in entries:
        result = graded(handed)
        fake.book.put(FACTS.fingerprint, result)
        outcomes += pages.settle(handed, result, True, Rendering("<p>notebook</p>"))
    return outcomes


def test_pages_are_written_once_and_again_only_when_what_they_say_of_the_class_changes(tmp_path):
    fake = Written(tmp_path)
    first = entry(tmp_path, "ada", "first", 1.0)
    assert [o.entry for o in grade(fake, first)] == [first]
    assert fake.pages == [("first", True)]
    grade(fake, entry(tmp_path, "ada", "second", 2.0))  # a newer one counts now: the first says so
    assert fake.pages == [("first", True), ("first", False), ("second", True)]  # in the order of ada's submissions
    grade(fake, entry(tmp_path, "bob", "third", 3.0), entry(tmp_path, "bob", "fourth", 4.0))  # another student's: ada's stay
    assert fake.pages[3:] == [("third", False), ("fourth", True)]  # bob's two, each once, when both are settled
    assert os.path.isfile(tmp_path / "submissions" / "ada" / "first" / "notebook.html")


def test_an_outcome_the_grader_owns_is_shown_and_never_kept(tmp_path):
    from grader.faults import Owner

    fake = Written(tmp_path)
    handed = entry(tmp_path, "ada", "first", 1.0)
    fake.book.record(FACTS.name, handed.stored)
    failed = dataclasses.replace(graded(handed), status="ungradable", owner=Owner.GRADER)
    [outcome] = run._Pages(fake, [handed]).settle(handed, failed, True)
    assert not outcome.kept and outcome.result.owner is Owner.GRADER
    assert fake.pages == [("first", None)]  # its page, with no class facts: it counts for nothing


def _pool_with_a_dead_worker(monkeypatch, exitcode: int, out_of_memory: bool):
    """A LocalPool whose one worker died while finishing notebook "k" (with "later" queued
    behind it), without starting any process: what _died makes of it."""
    import types

    from grader.grading.pipeline import Work
    from grader.scale import executors

    monkeypatch.setattr(executors, "_Worker", lambda pool: "a fresh worker")
    for name in ("over_budget_result", "crashed_result", "died_result"):
        monkeypatch.setattr(executors, name, lambda *args, name=name: (name, *args[1:]))
    pool = executors.LocalPool.__new__(executors.LocalPool)
    pool.context, pool.attempts, pool._failed_starts = None, executors.Attempts(None, 2), 0
    group = types.SimpleNamespace(memory_exhausted=lambda: out_of_memory)
    dead = types.SimpleNamespace(process=types.SimpleNamespace(exitcode=exitcode), group=group, ready=True, given=["k", "later"],
                                 finishing="k", why_dead=lambda: "why", close=lambda: 0)
    pool.workers = [dead]
    return pool, dead, {"k": Work("k", "k.ipynb", "k"), "later": Work("later", "later.ipynb", "later")}


def test_a_worker_the_kernel_stopped_for_the_cpu_budget_gives_the_notebook_its_own_verdict(monkeypatch):
    from grader.grading import budget

    pool, dead, by_key = _pool_with_a_dead_worker(monkeypatch, -budget.HARD_STOP, False)
    queue = __import__("collections").deque()
    done = list(pool._died(dead, queue, by_key))
    assert [d.result for d in done] == [("over_budget_result", by_key["k"])]  # at once: it would do the same again
    assert list(queue) == [by_key["later"]] and pool.workers == ["a fresh worker"]


def test_a_notebook_that_runs_every_worker_out_of_memory_is_its_own_verdict_and_a_kill_from_outside_is_not(monkeypatch):
    import collections

    for out_of_memory, expected in ((True, "crashed_result"), (False, "died_result")):
        pool, dead, by_key = _pool_with_a_dead_worker(monkeypatch, -9, out_of_memory)
        assert list(pool._died(dead, collections.deque(), by_key)) == []  # first time: tried again in a fresh worker
        pool.workers, dead.given = [dead], ["k", "later"]  # the same notebook, its second worker dead the same way
        done = list(pool._died(dead, collections.deque(), by_key))
        assert len(done) == 1 and done[0].result[0] == expected, done
        assert done[0].result[1] == by_key["k"]
