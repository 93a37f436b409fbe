"""Preflight: before any student is graded, the assignment must grade its own notebooks right.

The lab's solution, graded by the assignment's own checks in the same workers as the
class (the grading run grades them: grader/run.py), must get full marks, and the
untouched playground must not (a check that the playground passes checks nothing).
Either failure is the instructor's to fix, and stops the run with what to fix. This
module makes the pair and judges it. Both results are kept in the gradebook like any
other once they are right, so a rerun with nothing changed does not grade them again.
"""

from __future__ import annotations

import dataclasses
import os

from grader.config import scenarios
from grader.config import release as release_mod
from grader.context import Context
from grader.faults import GraderError
from grader.grading.pipeline import Work
from grader.results import SubmissionResult
from grader.store.storage import STATE, write_atomic
from reference.hashing import file_sha256

SOLUTION, PLAYGROUND = "reference-solution", "untouched-playground"


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


def pair(context: Context, out_dir: str) -> list[Work]:
    """The lab's solution and untouched playground, as files in the output folder's own
    folder, to grade like any submission (grader/run.py grades them, then `judge`)."""
    release, playground = context.release, release_mod.build(context.manifest)[1]
    made = scenarios.make(release, playground, ["solution.ipynb", "untouched_playground.ipynb"])
    works = []
    for name, content in {SOLUTION: made["solution.ipynb"], PLAYGROUND: made["untouched_playground.ipynb"]}.items():
        path = os.path.join(out_dir, STATE, f"{name}.ipynb")
        write_atomic(path, content)
        works.append(Work(file_sha256(path), path, name))
    return works


def not_graded(work: Work, result: SubmissionResult) -> GraderError:
    """What stops the run when the grader could not grade one of the lab's own pair: a
    cell of the lab's that failed in the sandbox (named, its error quoted), or the grader's
    own failure."""
    failed = result.provenance.get("lab_cell")
    if failed:
        return GraderError(
            f"the lab's own cell {failed['key']!r} failed when the grader ran the lab's {work.name.replace('-', ' ')}: "
            f"{failed['error']}",
            hint="the cell is the lab's, not a student's: change it in the source notebook so that it runs in the "
            "grader's sandbox (no TPU, no gs://: docs/authoring.md, \"The environment contract\"); nothing was graded")
    return GraderError(f"the grader could not grade the lab's own {work.name.replace('-', ' ')}: {result.reason}",
                       hint="nothing was graded; fix what the message says and run again")


def sandbox_problem(context: Context) -> str:
    """Run the lab's solution cells in a sandbox, as a submission's run would, without
    grading: "" if every cell ran, else what went wrong (the sandbox, not a notebook)."""
    from grader import sandbox
    from grader.config import match

    release = context.release
    sections = {key: (match.RunCell(key, "answer", release.cell(key).source),) for key in release.answer_keys}
    found = match.Match("ids", sections, ())
    outcome = sandbox.Runner(context.plan()).run(match.run_cells(release, found))
    try:
        if outcome.stopped_by:
            return outcome.limit_message
        from grader.grading import artifact

        log = artifact.read(outcome.out_dir).log
        failed = [entry for entry in log if entry.get("status") != "ok"]
        if not log or failed:
            last = [line for line in outcome.stderr_tail.splitlines() if line.strip()][-1:] or ["no message"]
            which = f"cell {failed[0].get('key')!r} failed" if failed else "no cell ran"
            return f"{which} in a run of the lab's own solution (exit code {outcome.exit_code}: {last[0][-300:]})"
        return ""
    finally:
        outcome.remove()


def judge(results: dict[str, SubmissionResult], graded: frozenset = frozenset()) -> Preflight:
    """The pair's results (by SOLUTION and PLAYGROUND) judged: the solution must get full
    marks and the playground must not; raise what the instructor must fix otherwise."""
    found = Preflight(results[SOLUTION], results[PLAYGROUND], graded)
    solution, playground = found.solution, found.playground
    if solution.status != "graded" or solution.score < solution.max_score:
        failed = [f"{c.id}: {c.message}" for c in solution.checks if c.status != "passed"] or [solution.reason]
        raise GraderError(
            f"the lab's own solution gets {solution.score:g}/{solution.max_score:g} from the assignment's checks:\n    "
            + "\n    ".join(failed),
            hint="fix the solution in the source notebook, or the checks in assignment.toml (e.g. calibrate a threshold "
            "on this data); nothing was graded",
        )
    if playground.status == "graded" and playground.score >= playground.max_score:
        raise GraderError(
            "the untouched playground gets full marks: the assignment's checks do not tell an answer from no answer",
            hint="add checks that the playground fails (see docs/manifest.md); nothing was graded",
        )
    return found
