"""One submission from file to result: read -> match -> run -> checks -> score.

`grade_submission` shows the whole flow; each stage lives in its own module. Nothing
here raises for a submission: an unreadable file or a missing answer is an
`ungradable` result, a failing cell is a failed check, and a failure of the grader's
own becomes a result owned by the grader (`SubmissionResult.owner`, grader/faults.py),
which the grading run never keeps: the executor tries the notebook again.

`graded` is a worker's one loop over a stream of notebooks, in a pipeline: the next
submission's sandbox runs while this one is checked and trained.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Iterable, Iterator

from grader import __version__ as GRADER_VERSION
from grader import faults, sandbox
from grader.config import match, notebook
from grader.context import Context
from grader.faults import GraderFault, LabCellFailed, Missing, Owner
from grader.grading import artifact, checks, integrity
from grader.grading import budget as budget_mod
from grader.grading import sample as sample_mod
from grader.grading.budget import Budget
from grader.grading.evidence import Evidence, Trusted, model_summary
from grader.results import CheckResult, SubmissionResult
from reference.cache import FeatureCache
from reference.hashing import file_sha256

FLUSH = "flush"  # in a stream of notebooks: finish the one held, the queue is empty for now


@dataclasses.dataclass(frozen=True)
class Work:
    """One notebook to grade: its content hash (the key), file and display name."""

    key: str
    path: str
    name: str


class Grader:
    """A warm grader: everything that is the same for all submissions one worker grades
    (the run's context, the checks built, the trusted side, the sandbox runner)."""

    def __init__(self, context: Context, ahead: bool = False):
        """`ahead`: start each next sandbox while the last submission is checked (for batches)."""
        self.checks = tuple((spec, checks.build(spec)) for spec in context.manifest.checks)
        self.setting = Trusted(context, FeatureCache(context.cache_dir) if context.cache_dir else None)
        self.runner = sandbox.Runner(context.plan(), ahead)

    @property
    def context(self) -> Context:
        return self.setting.context

    def use(self, context: Context) -> None:
        """Grade with the run's context from now on, received whole (the model budget is
        known once the lab's solution is graded). What this grader computed once stays:
        the context is of the same assignment, data, weights and code (its fingerprint)."""
        if context.fingerprint != self.context.fingerprint:
            raise GraderFault(f"a worker of run {self.context.fingerprint} was sent the context of run {context.fingerprint}")
        self.setting.context = context

    @property
    def budget(self) -> Budget | None:
        """The budget of the grader's work on each notebook (grader/grading/budget.py), set in the context once the lab's solution is graded."""
        return self.context.budget

    @property
    def release(self):
        return self.context.release

    @property
    def sandboxed(self) -> bool:
        return self.runner.plan.sandboxed

    def close(self) -> None:
        self.runner.close()


def graded(items: Iterable, grader: Grader, finishing: Callable[[Work], None] = lambda work: None) -> Iterator[tuple[Work, SubmissionResult]]:
    """(work, result) for each Work of `items`, in a pipeline: each notebook's sandbox is
    started when it comes, and the one before it is checked and trained meanwhile. FLUSH
    in `items` finishes the one held; at the end of `items` the one held is cancelled
    (a stream that must finish everything ends with FLUSH). `finishing(work)` is called
    before a notebook is checked (a worker tells its parent which one it is on)."""
    held = None  # (work, Started or the error that starting it raised)
    try:
        for item in items:
            previous = held
            held = (item, start_safely(item.path, item.name, grader)) if item != FLUSH else None
            if previous is not None:
                finishing(previous[0])
                yield previous[0], finish_safely(previous[0].path, previous[0].name, previous[1], grader)
    finally:
        if held is not None and isinstance(held[1], Started):
            held[1].cancel()


def grade_all(works: Iterable[Work], grader: Grader) -> Iterator[tuple[Work, SubmissionResult]]:
    """(work, result) for every work, in a pipeline (see `graded`)."""
    return graded([*works, FLUSH], grader)


def start_safely(path: str, name: str, grader: Grader) -> "Started | Exception":
    """start_submission, except that a failure is returned, for finish_safely to settle."""
    try:
        return start_submission(path, name, grader)
    except Exception as error:  # noqa: BLE001 - settled by its owner in finish_safely
        return error


def finish_safely(path: str, name: str, started, grader: Grader) -> SubmissionResult:
    """finish_submission; an exception becomes a result, by its owner (the one ladder that
    decides what a failure while grading a submission means)."""
    if isinstance(started, Exception):
        return _failed(path, name, grader, started, "reading the notebook failed", time.monotonic())
    try:
        return finish_submission(started, grader)
    except Exception as error:  # noqa: BLE001
        started.cancel()
        return _failed(path, name, grader, error, "grading failed", started.clock)


def _failed(path: str, name: str, grader: Grader, error: Exception, doing: str, clock: float) -> SubmissionResult:
    if faults.owner_of(error) is Owner.STUDENT:  # a student's mistake no stage turned into a verdict
        return ungradable(grader.context, path, name, str(error), "fix what the message says and submit again", clock)
    if isinstance(error, LabCellFailed):  # the lab's own, the same for every notebook: the instructor's, never a grade
        result = ungradable(grader.context, path, name, str(error), "tell your instructor: a cell of the lab's own fails in "
                            "the grader's sandbox, which nothing of yours can change", clock, Owner.INSTRUCTOR)
        return dataclasses.replace(result, provenance={**result.provenance, "lab_cell": error.record()})
    return grader_failed(path, name, grader, GraderFault.from_error(error, doing), clock)


def grader_failed(path: str, name: str, grader: Grader, fault: GraderFault, started: float) -> SubmissionResult:
    """The result of a notebook the grader failed on: the grader's, never kept."""
    return ungradable(grader.context, path, name, f"the grader itself failed on this notebook ({fault.message})",
                      "tell your instructor: this is the grader's fault, and grading it again may work", started, Owner.GRADER)


def ungradable(context: Context, path: str, name: str, reason: str, fix: str, started: float | None = None,
               owner: Owner = Owner.STUDENT) -> SubmissionResult:
    """A result that is not a verdict on the model: every check skipped, the reason and the fix."""
    digest = file_sha256(path) if os.path.isfile(path) else ""
    result = _ungradable(_base_result(context, name, path, digest), context, reason, fix, started or time.monotonic())
    return dataclasses.replace(result, owner=owner)


@dataclasses.dataclass
class Started:
    """A submission read and matched, its sandbox run started (or its result already known)."""

    base: SubmissionResult
    clock: float
    result: SubmissionResult | None = None  # decided without a run: unreadable, no answer
    found: object = None  # the Match
    pending: sandbox.Pending | None = None

    def cancel(self) -> None:
        if self.pending is not None:
            self.pending.cancel()


def grade_submission(path: str, name: str, grader: Grader) -> SubmissionResult:
    """One submission from file to result (a failure is a result, by its owner)."""
    return finish_safely(path, name, start_safely(path, name, grader), grader)


# The cells one run may hold: the lab's own are a few dozen; the runner keeps a sealed record
# of each (a file it holds open), and a notebook of thousands would exhaust them
MAX_RUN_CELLS = 300


def start_submission(path: str, name: str, grader: Grader) -> Started:
    """Read and match the notebook, and start its sandbox run (without waiting for it)."""
    clock = time.monotonic()
    digest = file_sha256(path)
    base = _base_result(grader.context, name, path, digest)
    try:
        submitted = notebook.read_submission(path)
    except (notebook.Unreadable, OSError) as error:
        return Started(base, clock, _ungradable(base, grader.context, str(error), "submit the notebook file (.ipynb) of the assignment", clock))
    answer = grader.context.lab.answer
    found = match.match(submitted, grader.release, answer)
    if not found.found:
        return Started(base, clock, _ungradable(
            base,
            grader.context,
            "no answer cell found: no cell has the assignment's ids, no heading is marked [WORK REQUIRED], "
            f"and no cell assigns `{answer}`",
            "start from the assignment's playground notebook and write your answer in the cell under the [WORK REQUIRED] heading",
            clock,
        ))
    ran = match.run_cells(grader.release, found)
    if len(ran) > MAX_RUN_CELLS:
        return Started(base, clock, _ungradable(
            base, grader.context,
            f"the notebook has {len(ran)} cells to run, more than the {MAX_RUN_CELLS} the grader runs for one notebook",
            "keep your answer in the answer cell and a few cells of your own next to it; delete the cells you do not need",
            clock,
        ))
    return Started(base, clock, found=found, pending=grader.runner.start(ran))


def finish_submission(started: Started, grader: Grader) -> SubmissionResult:
    """Wait for the run, check what it made, train the model, score. Raises for the
    grader's own failures (among them a run the host starved of CPU)."""
    if started.result is not None:
        return started.result
    outcome = started.pending.outcome()
    try:
        if outcome.host_fault:
            raise GraderFault(outcome.host_fault)
        made = artifact.read(outcome.out_dir)
        ran = match.run_cells(grader.release, started.found)
        log, disagreed = integrity.reconciled(made.log, outcome.witness, ran, {cell.key for cell in started.found.student_cells})
        made, distrusted = integrity.believed_export(dataclasses.replace(made, log=log), outcome.watcher)
        _assignment_cells_ran(outcome, made, started.found, ran)
        review = (*disagreed, *distrusted, *integrity.export_notes(made.export),
                  *(f"the answer {reach}" for reach in integrity.reaches(started.found.student_cells)))
        watch = budget_mod.Watch(grader.setting.budget)
        try:
            with watch:
                return _checked(started, grader, made, outcome, watch, review, ran)
        except budget_mod.OverBudget:
            # Stopped between two steps of its own: once more, with every costly fact now the
            # budget's verdict (the watch fires once). What the stopped work was building in
            # this process (a rebuilt model, a trained head) is forgotten.
            forget_work()
            return _checked(started, grader, made, outcome, watch, review, ran)
    finally:
        outcome.remove()


def _untouched(spec, check, evidence: Evidence) -> CheckResult:
    """A check of a notebook whose answers are the playground's as given: nothing of the
    student's to check (nothing is trained either), so no points, and the reason."""
    return CheckResult(spec.id, spec.title, "failed", 0.0, spec.points,
                       f"not checked: the answer is the playground's as it was given, with no {evidence.setting.lab.kind} "
                       "of yours in it; write your answer in the cell under the [WORK REQUIRED] heading", repr(check))


def _checked(started: Started, grader: Grader, made, outcome, watch, review: tuple[str, ...], ran) -> SubmissionResult:
    """The checks of a run's artifact, and the result they make."""
    found, base = started.found, started.base
    given = {key: grader.release.cell(key) for key in grader.release.answer_keys}
    evidence = Evidence(grader.setting, found, outcome, made, given, watch)
    results = tuple(_untouched(spec, check, evidence) if evidence.untouched() and spec.check != "answer_cells_run"
                    else checks.run_check(spec, check, evidence) for spec, check in grader.checks)
    if watch.fired:
        forget_work()
    elif grader.setting.lab.kind == "model":
        evidence.review.extend(evidence.source_notes(ran))
    return dataclasses.replace(
        base,
        status="graded",
        score=round(sum(r.score for r in results), 2),
        checks=results,
        model=_summary(evidence),
        training=_training(evidence),
        cells=_cells(evidence, found),
        provenance=_provenance(grader, evidence, found, started.clock),
        review=tuple(dict.fromkeys((*review, *evidence.review))),
    )


def forget_work() -> None:
    """Drop what this process keeps between notebooks (rebuilt models, trained heads, shapes
    asked), after work that was stopped partway: nothing half made is used again."""
    from grader.grading import evidence as evidence_mod
    from reference import training

    artifact.REBUILT.models.clear()
    training._HEADS.items.clear()
    evidence_mod._APPLIES.clear()


def _assignment_cells_ran(outcome, made, found, ran) -> None:
    """The cells before the first answer are the assignment's, the same for everyone: if the
    run ended before any of them ran, or one of them failed, the sandbox or the assignment is
    at fault, never the student (who has not run a line yet). What the run's log says of
    them is taken from the runner's witness (see grader/grading/integrity.py): a run that rewrites
    its log cannot pass its own failure off as the assignment's."""
    if outcome.stopped_by:
        return
    student = {cell.key for cell in found.student_cells}
    if not integrity.sealed_before_answer(outcome.witness, ran, student) and outcome.last_started in student:
        return  # the student's code had started (the progress file says so): whatever happened next is the run's own
    if outcome.last_started in {cell.key for cell in found.added_above}:
        return  # a cell the student added above the answer was running: the run's end is theirs too
    if not made.log:
        last = [line for line in outcome.stderr_tail.splitlines() if line.strip()][-1:] or ["no message"]
        raise GraderFault(f"the sandbox run ended before any cell ran (exit code {outcome.exit_code}: {last[0][-300:]})")
    first = {cell.key for cell in found.student_cells}
    for entry in made.log:
        if entry.get("key") in first or entry.get("role") not in ("locked", "above"):
            return
        if entry.get("role") == "above":  # a cell the student added: what fails after it may be theirs
            return
        if entry.get("status") == "error":
            error = entry.get("error") or {}
            raise LabCellFailed(str(entry.get("key")), f"{error.get('name', 'an error')}: {str(error.get('message', ''))[:200]}")


def _base_result(context: Context, name: str, path: str, digest: str) -> SubmissionResult:
    return SubmissionResult(
        assignment=context.manifest.name,
        version=context.manifest.version,
        submission=name,
        file=os.path.basename(path),
        sha256=digest,
        status="ungradable",
        score=0.0,
        max_score=sum(spec.points for spec in context.manifest.checks),
    )


def _ungradable(base: SubmissionResult, context: Context, reason: str, fix: str, started: float) -> SubmissionResult:
    skipped = tuple(
        CheckResult(spec.id, spec.title, "skipped", 0.0, spec.points, "not checked: the notebook could not be graded", repr(checks.build(spec)))
        for spec in context.manifest.checks
    )
    provenance = {"grader_version": GRADER_VERSION, "seconds": round(time.monotonic() - started, 2), "sandbox": context.sandboxed}
    return dataclasses.replace(base, checks=skipped, reason=reason, fix=fix, provenance=provenance)


def _summary(evidence: Evidence) -> dict:
    if evidence.setting.lab.kind == "dataset":
        return _sample_summary(evidence)
    try:
        return model_summary(evidence.model(), evidence.chain, evidence.setting.base_name)
    except Missing as missing:
        return {"problem": str(missing)}


def _sample_summary(evidence: Evidence) -> dict:
    """A dataset lab's answer as the scorecard shows it: the elements its dataset yielded."""
    try:
        sample = evidence.sample()
    except Missing as missing:
        return {"problem": str(missing), "what": "dataset"}
    return {"what": "dataset", "sample": sample_mod.rows(sample, evidence.setting.pictures, evidence.setting.dataset.classes),
            "element_spec": sample.element_spec}


def _training(evidence: Evidence) -> dict:
    if not evidence.has_training():
        return {}
    run = evidence.training()
    return {
        "val_accuracy": run.val_accuracy,
        "history": run.history,
        "confusion": run.confusion,
        "classes": list(evidence.setting.dataset.classes),
        "misclassified": list(run.misclassified),
        "seconds": run.seconds,
        **({"batch_norm_settled": True} if run.batch_norm_settled else {}),
        **({"stopped": run.stopped} if run.stopped else {}),
    }


def _cells(evidence: Evidence, found) -> tuple[dict, ...]:
    shown = []
    for cell in evidence.student_cells:
        entry = evidence.artifact.cell(cell.key) or {"status": "not run"}
        shown.append({"key": cell.key, "role": cell.role, "source": cell.source, **_cell_output(entry)})
        if cell.role == "answer":
            shown[-1]["unanswered"] = evidence.unanswered(cell)
    for cell in found.added_above:
        entry = evidence.artifact.cell(cell.key) or {"status": "not run"}
        shown.append({"key": cell.key, "role": "added above", "source": cell.source, **_cell_output(entry),
                      "note": "a cell you added above the answer: run in its place, on a best effort (a failure here is "
                              "reported, not graded)"})
    for cell in found.skipped:
        shown.append({"key": cell.key, "role": "not run", "source": cell.source, "status": "not run", "note": f"not run: {cell.reason}"})
    if found.codelab_cells:
        names = ", ".join(found.codelab_cells)
        shown.append({"key": "the codelab's cells", "role": "replaced", "source": "", "status": "replaced by the lab's versions",
                      "note": f"{len(found.codelab_cells)} of your notebook's cells are the codelab's own versions of the lab's "
                              f"cells ({names}): the grader ran the lab's version of each, which reads the grader's copy "
                              "of the data; the cells after the answer (training, curves) are not run: the grader trains "
                              "the model itself"})
    for key in found.changed_locked:
        shown.append({"key": key, "role": "changed locked cell", "source": "", "status": "replaced by the assignment's version",
                      "note": "you changed a cell of the lab's: the grader ran the lab's own version of it"})
    return tuple(shown)


def _cell_output(entry: dict) -> dict:
    keep = {k: entry.get(k) for k in ("status", "stdout", "stderr") if entry.get(k) is not None}
    error = entry.get("error")
    if isinstance(error, dict):
        keep["error"] = {k: str(error.get(k, "")) for k in ("name", "message", "traceback")}
    return keep


def _provenance(grader: Grader, evidence: Evidence, found, started: float) -> dict:
    setting = grader.setting
    facts = {
        "grader_version": GRADER_VERSION,
        "weights": setting.weights.identity if setting.weights is not None else "none (the lab has no pretrained base)",
        "dataset": f"{setting.dataset.pattern} ({len(setting.dataset.files)} files)",
        "image_size": setting.image_size,
        "epochs": setting.training.epochs,
        "batch_size": setting.training.batch_size,
        "seed": setting.training.seed,
        "matched_by": found.how,
        "sandbox": grader.sandboxed,
        "sandbox_seconds": round(evidence.outcome.seconds, 2),
        "stopped_by": evidence.outcome.stopped_by,
        "seconds": round(time.monotonic() - started, 2),
        "training": "not trained",
    }
    if getattr(evidence.outcome, "cpu_seconds", None) is not None:
        facts["sandbox_cpu_seconds"] = round(evidence.outcome.cpu_seconds, 2)
    cpu, grown = evidence.watch.used()
    facts["grader_cpu_seconds"] = round(cpu, 2)  # the grader's own work on it, against [grader] work_cpu_seconds
    if evidence.watch.fired:
        facts["over_budget"] = evidence.watch.reason
    if evidence.has_training():
        run = evidence.training()
        facts.update(training=run.path, training_seconds=run.seconds, device=run.device, replicas=run.replicas, strategy=run.placement)
    return facts
