"""One submission from file to result: read -> match -> run -> checks -> score.

`grade_submission` shows the whole flow; each stage lives in its own module. Nothing
here raises for a student's mistake: an unreadable file or a missing answer is an
`ungradable` result, a failing cell is a failed check.
"""

from __future__ import annotations

import dataclasses
import os
import time

import grader
from grader import artifact, checks, match, notebook, sandbox
from grader import cells as cells_mod
from grader.evidence import Evidence, Missing, Setting, model_summary
from grader.manifest import Manifest
from grader.release import Release
from grader.results import CheckResult, SubmissionResult
from reference.data import CLASSES
from reference.hashing import file_sha256


@dataclasses.dataclass(frozen=True)
class Batch:
    """Everything that is the same for all submissions of one grading run."""

    manifest: Manifest
    release: Release
    setting: Setting
    checks: tuple  # (CheckSpec, Check) pairs, built once from the manifest
    runner: sandbox.Runner

    @classmethod
    def create(cls, manifest, release, setting, mounts, sandboxed, ahead: bool = False) -> "Batch":
        """`ahead`: start each next sandbox while the last submission is checked (for batches)."""
        built = tuple((spec, checks.build(spec)) for spec in manifest.checks)
        warm = [name for c in release.cells if c.kind == "locked" for name in cells_mod.imported_modules(c.source)]
        plan = sandbox.Plan(mounts, manifest.limits, manifest.image_size, manifest.batch_size, sandboxed, tuple(dict.fromkeys(warm)))
        return cls(manifest, release, setting, built, sandbox.Runner(plan, ahead))

    @property
    def sandboxed(self) -> bool:
        return self.runner.plan.sandboxed

    def close(self) -> None:
        self.runner.close()


def grade_safely(path: str, name: str, batch: Batch) -> SubmissionResult:
    """grade_submission, except that a failure of the grader's own costs this notebook only."""
    return next(grade_all([(None, path, name)], batch))[1]


def grade_all(items, batch: Batch):
    """(key, result) for each (key, path, name), graded in a pipeline: the next
    submission's sandbox runs while this one is checked and trained. A failure of the
    grader's own costs that notebook only."""
    waiting = None  # (key, path, name, Started or the error it raised)
    try:
        for item in [*items, None]:
            previous, waiting = waiting, None
            if item is not None:
                key, path, name = item
                try:
                    waiting = (key, path, name, start_submission(path, name, batch))
                except Exception as error:  # noqa: BLE001
                    waiting = (key, path, name, error)
            if previous is not None:
                key, path, name, started = previous
                if isinstance(started, Exception):
                    yield key, _grader_failed(path, name, batch, started, time.monotonic())
                    continue
                try:
                    result = finish_submission(started, batch)
                except Exception as error:  # noqa: BLE001
                    started.cancel()
                    result = _grader_failed(path, name, batch, error, started.clock)
                yield key, result
    finally:
        if waiting is not None and isinstance(waiting[3], Started):
            waiting[3].cancel()


def _grader_failed(path: str, name: str, batch: Batch, error: Exception, started: float) -> SubmissionResult:
    digest = file_sha256(path) if os.path.isfile(path) else ""
    result = _ungradable(
        _base_result(batch, name, path, digest), batch,
        f"the grader itself failed on this notebook ({type(error).__name__}: {str(error)[:300]})",
        "tell your instructor: this is the grader's fault, and grading it again may work", started,
    )
    # Not a verdict on the notebook: the gradebook does not keep it, so a rerun tries again.
    return dataclasses.replace(result, provenance={**result.provenance, "grader_error": True})


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


def grade_submission(path: str, name: str, batch: Batch) -> SubmissionResult:
    return finish_submission(start_submission(path, name, batch), batch)


def start_submission(path: str, name: str, batch: Batch) -> Started:
    """Read and match the notebook, and start its sandbox run (without waiting for it)."""
    clock = time.monotonic()
    digest = file_sha256(path)
    base = _base_result(batch, name, path, digest)
    try:
        submitted = notebook.read_submission(path)
    except (notebook.Unreadable, OSError) as error:
        return Started(base, clock, _ungradable(base, batch, str(error), "submit the notebook file (.ipynb) of the assignment", clock))
    found = match.match(submitted, batch.release)
    if not found.found:
        return Started(base, clock, _ungradable(
            base,
            batch,
            "no answer cell found: no cell has the assignment's ids, no heading is marked [WORK REQUIRED], "
            "and no cell assigns `model`",
            "start from the assignment's playground notebook and write your answer in the cell under the [WORK REQUIRED] heading",
            clock,
        ))
    return Started(base, clock, found=found, pending=batch.runner.start(match.run_cells(batch.release, found.answers)))


def finish_submission(started: Started, batch: Batch) -> SubmissionResult:
    """Wait for the run, check what it made, train the model, score."""
    if started.result is not None:
        return started.result
    found, base = started.found, started.base
    outcome = started.pending.outcome()
    try:
        evidence = Evidence(batch.setting, found, outcome, artifact.read(outcome.out_dir), batch.release.answer_keys)
        results = tuple(checks.run_check(spec, check, evidence) for spec, check in batch.checks)
        return dataclasses.replace(
            base,
            status="graded",
            score=round(sum(r.score for r in results), 2),
            checks=results,
            model=_summary(evidence),
            training=_training(evidence),
            cells=_cells(evidence, found),
            provenance=_provenance(batch, evidence, found, started.clock),
        )
    finally:
        outcome.remove()


def _base_result(batch: Batch, name: str, path: str, digest: str) -> SubmissionResult:
    return SubmissionResult(
        assignment=batch.manifest.name,
        version=batch.manifest.version,
        submission=name,
        file=os.path.basename(path),
        sha256=digest,
        status="ungradable",
        score=0.0,
        max_score=sum(spec.points for spec in batch.manifest.checks),
    )


def _ungradable(base: SubmissionResult, batch: Batch, reason: str, fix: str, started: float) -> SubmissionResult:
    skipped = tuple(
        CheckResult(spec.id, spec.title, "skipped", 0.0, spec.points, "not checked: the notebook could not be graded", repr(check))
        for spec, check in batch.checks
    )
    provenance = {"grader_version": grader.__version__, "seconds": round(time.monotonic() - started, 2), "sandbox": batch.sandboxed}
    return dataclasses.replace(base, checks=skipped, reason=reason, fix=fix, provenance=provenance)


def _summary(evidence: Evidence) -> dict:
    try:
        return model_summary(evidence.model())
    except Missing as missing:
        return {"problem": str(missing)}


def _training(evidence: Evidence) -> dict:
    if not evidence.has_training():
        return {}
    run = evidence.training()
    return {
        "val_accuracy": run.val_accuracy,
        "history": run.history,
        "confusion": run.confusion,
        "classes": list(CLASSES),
        "misclassified": list(run.misclassified),
        "seconds": run.seconds,
    }


def _cells(evidence: Evidence, found) -> tuple[dict, ...]:
    shown = []
    for key in evidence.answer_keys:
        entry = evidence.artifact.cell(key) or {"status": "not run"}
        shown.append({"key": key, "role": "answer", "source": found.answers.get(key, ""), **_cell_output(entry)})
    for key in found.changed_locked:
        shown.append({"key": key, "role": "changed locked cell", "source": "", "status": "replaced by the assignment's version"})
    return tuple(shown)


def _cell_output(entry: dict) -> dict:
    keep = {k: entry.get(k) for k in ("status", "stdout", "stderr") if entry.get(k) is not None}
    error = entry.get("error")
    if isinstance(error, dict):
        keep["error"] = {k: str(error.get(k, "")) for k in ("name", "message", "traceback")}
    return keep


def _provenance(batch: Batch, evidence: Evidence, found, started: float) -> dict:
    setting = batch.setting
    facts = {
        "grader_version": grader.__version__,
        "weights": setting.weights.identity,
        "dataset": f"{setting.dataset.pattern} ({len(setting.dataset.files)} files)",
        "image_size": setting.image_size,
        "epochs": setting.training.epochs,
        "batch_size": setting.training.batch_size,
        "seed": setting.training.seed,
        "matched_by": found.how,
        "sandbox": batch.sandboxed,
        "sandbox_seconds": round(evidence.outcome.seconds, 2),
        "stopped_by": evidence.outcome.stopped_by,
        "seconds": round(time.monotonic() - started, 2),
        "training": "not trained",
    }
    if evidence.has_training():
        run = evidence.training()
        facts.update(training=run.path, training_seconds=run.seconds, device=run.device, replicas=run.replicas, strategy=run.placement)
    return facts
