"""Preflight: before any student is graded, the assignment must grade its own notebooks right.

The lab's solution, graded by the assignment's own checks in the same workers as the
class, must get full marks, and the untouched playground must not (a check that the
playground passes checks nothing). Either failure is the instructor's to fix, and stops
the run with what to fix. Both results are kept in the gradebook like any other, so a
rerun with nothing changed does not grade them again.
"""

from __future__ import annotations

import dataclasses
import os

from grader import gradebook, scenarios
from grader import release as release_mod
from grader.context import STATE, Context
from grader.errors import GraderError
from grader.executors import Work
from grader.results import SubmissionResult
from grader.storage import write_atomic
from reference.hashing import file_sha256

SOLUTION, PLAYGROUND = "reference-solution", "untouched-playground"


class PreflightFailed(GraderError):
    """The assignment does not grade its own solution and playground as it should."""


@dataclasses.dataclass(frozen=True)
class Preflight:
    solution: SubmissionResult
    playground: SubmissionResult
    graded: frozenset = frozenset()  # the contents (sha256) graded by this run, not taken from the gradebook

    def lines(self) -> list[str]:
        """What was checked, one line each, for `grader check`."""
        return [
            f"the lab's solution: {self.solution.score:g}/{self.solution.max_score:g} (full marks needed)",
            f"the untouched playground: {self.playground.score:g}/{self.playground.max_score:g} (must be below full marks)",
        ]


def run(context: Context, pool_of, book: gradebook.Gradebook, out_dir: str, regrade: bool = False) -> Preflight:
    """Grade the solution and the playground (unless the gradebook has them); raise if wrong.

    `pool_of()` gives the grading pool (it is only started if something needs grading)."""
    release, playground = context.release, release_mod.build(context.manifest)[1]
    made = scenarios.make(release, playground, ["solution.ipynb", "untouched_playground.ipynb"])
    wanted = {SOLUTION: made["solution.ipynb"], PLAYGROUND: made["untouched_playground.ipynb"]}
    results: dict[str, SubmissionResult] = {}
    todo = []
    for name, content in wanted.items():
        path = os.path.join(out_dir, STATE, f"{name}.ipynb")
        write_atomic(path, content)
        digest = file_sha256(path)
        stored = None if regrade else book.get(context.manifest.name, context.manifest.version, context.fingerprint, digest)
        if stored is not None:
            results[name] = stored[0]
        else:
            todo.append(Work(digest, path, name))
    for work, result in (pool_of().grade(todo) if todo else ()):
        failed = result.provenance.get("lab_cell")
        if failed:
            raise PreflightFailed(
                f"the lab's own cell {failed['key']!r} failed when the grader ran the lab's {work.name.replace('-', ' ')}: "
                f"{failed['error']}",
                hint="the cell is the lab's, not a student's: change it in the source notebook so that it runs in the "
                "grader's sandbox (no TPU, no gs://: docs/authoring.md, \"The environment contract\"); nothing was graded")
        if result.provenance.get("grader_error"):
            raise PreflightFailed(f"the grader could not grade the lab's own {work.name.replace('-', ' ')}: {result.reason}",
                                  hint="nothing was graded; fix what the message says and run again")
        results[work.name] = result
    found = Preflight(results[SOLUTION], results[PLAYGROUND], frozenset(work.key for work in todo))
    _judge(found)
    for work in todo:  # kept only once they are right: a rerun then skips them
        book.put(context.fingerprint, results[work.name])
    return found


def sandbox_problem(context: Context) -> str:
    """Run the lab's solution cells in a sandbox, as a submission's run would, without
    grading: "" if every cell ran, else what went wrong (the sandbox, not a notebook)."""
    from grader import match, sandbox

    release = context.release
    sections = {key: (match.RunCell(key, "answer", release.cell(key).source),) for key in release.answer_keys}
    found = match.Match("ids", sections, ())
    outcome = sandbox.Runner(context.plan()).run(match.run_cells(release, found))
    try:
        if outcome.stopped_by:
            return outcome.limit_message
        from grader import artifact

        log = artifact.read(outcome.out_dir).log
        failed = [entry for entry in log if entry.get("status") != "ok"]
        if not log or failed:
            last = [line for line in outcome.stderr_tail.splitlines() if line.strip()][-1:] or ["no message"]
            which = f"cell {failed[0].get('key')!r} failed" if failed else "no cell ran"
            return f"{which} in a run of the lab's own solution (exit code {outcome.exit_code}: {last[0][-300:]})"
        return ""
    finally:
        outcome.remove()


def _judge(found: Preflight) -> None:
    solution, playground = found.solution, found.playground
    if solution.status != "graded" or solution.score < solution.max_score:
        failed = [f"{c.id}: {c.message}" for c in solution.checks if c.status != "passed"] or [solution.reason]
        raise PreflightFailed(
            f"the lab's own solution gets {solution.score:g}/{solution.max_score:g} from the assignment's checks:\n    "
            + "\n    ".join(failed),
            hint="fix the solution in the source notebook, or the checks in assignment.toml (e.g. calibrate a threshold "
            "on this data); nothing was graded",
        )
    if playground.status == "graded" and playground.score >= playground.max_score:
        raise PreflightFailed(
            "the untouched playground gets full marks: the assignment's checks do not tell an answer from no answer",
            hint="add checks that the playground fails (see docs/manifest.md); nothing was graded",
        )
