"""Checks: small callables registered by name and declared in the manifest.

A check factory takes the manifest's parameters and returns a frozen callable with a
readable repr; called on a submission's Evidence it returns a `Verdict`. `run_check`
turns that into a CheckResult with points, and turns a crash into status "error".
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable

from grader import cells
from grader.errors import ManifestError
from grader.evidence import Evidence, Missing, is_mobilenet
from grader.manifest import CheckSpec
from grader.results import CheckResult
from grader.structure import RuleError, compare, parse_rule

REGISTRY: dict[str, Callable[..., "Check"]] = {}


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str  # passed, failed, partial, skipped
    message: str
    fraction: float = 0.0  # of the points, for partial
    evidence: dict = dataclasses.field(default_factory=dict)


class Check:
    """Base of checks: a frozen callable whose repr names it and its parameters."""

    name = "check"

    def __call__(self, evidence: Evidence) -> Verdict:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.name}({fields})"


def register(name: str):
    def decorate(factory):
        factory.name = name
        REGISTRY[name] = factory
        return factory

    return decorate


def build(spec: CheckSpec) -> Check:
    """The check a manifest entry declares; a bad name or parameter is a ManifestError."""
    factory = REGISTRY.get(spec.check)
    if factory is None:
        close = difflib.get_close_matches(spec.check, REGISTRY, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ManifestError(
            f"check {spec.id!r}: unknown check {spec.check!r}",
            hint=f"{hint}known checks: {', '.join(sorted(REGISTRY))}",
        )
    try:
        return factory(**spec.params)
    except (TypeError, ValueError, RuleError) as error:
        raise ManifestError(f"check {spec.id!r} ({spec.check}): bad parameters: {error}") from None


def run_check(spec: CheckSpec, check: Check, evidence: Evidence) -> CheckResult:
    try:
        verdict = check(evidence)
    except Missing as missing:
        verdict = Verdict("failed", str(missing))
    except Exception as error:  # a crashing check costs its points, never the batch
        return CheckResult(spec.id, spec.title, "error", 0.0, spec.points, f"the check itself failed: {type(error).__name__}: {error}", repr(check))
    fraction = {"passed": 1.0, "partial": verdict.fraction}.get(verdict.status, 0.0)
    return CheckResult(
        spec.id, spec.title, verdict.status, round(spec.points * fraction, 2), spec.points, verdict.message, repr(check), verdict.evidence
    )


# --- the checks ------------------------------------------------------------------------


@register("answer_cells_run")
@dataclasses.dataclass(frozen=True)
class AnswerCellsRun(Check):
    """Every answer cell was filled in and ran without an error."""

    def __call__(self, evidence: Evidence) -> Verdict:
        if evidence.outcome.stopped_by in ("memory", "processes", "cpu"):
            return Verdict("failed", evidence.stopped_message())
        for key in evidence.answer_keys:
            source = evidence.match.answers.get(key, "")
            entry = evidence.artifact.cell(key)
            if entry is None:
                if evidence.outcome.stopped_by:
                    return Verdict("failed", f"the answer cell did not finish: {evidence.stopped_message()}")
                if evidence.outcome.last_started == key:
                    return Verdict("failed", f"the run ended in the middle of the answer cell (exit code {evidence.outcome.exit_code}), so nothing after it ran")
                return Verdict("failed", f"the answer cell did not run: {evidence.why_not_run()}")
            if entry.get("status") == "error":
                error = entry.get("error") or {}
                where = _quote_line(source, error.get("line"))
                return Verdict(
                    "failed",
                    f"the answer cell raised {error.get('name', 'an error')}{where}: {error.get('message', '')}",
                    evidence={"traceback": str(error.get("traceback", ""))},
                )
            if evidence.outcome.stopped_by and evidence.outcome.stopped_cell == key:
                return Verdict("failed", evidence.stopped_message())
            if cells.has_placeholder(source):
                placeholder = next(p for p in cells.PLACEHOLDERS if p in source)
                return Verdict("failed", f"the cell still holds the placeholder `{placeholder}`: write your code in its place")
        return Verdict("passed", "the answer cell ran without errors")


def _quote_line(source: str, line) -> str:
    lines = source.splitlines()
    if isinstance(line, int) and 1 <= line <= len(lines):
        return f" at line {line} `{lines[line - 1].strip()}`"
    return ""


@register("model_structure")
@dataclasses.dataclass(frozen=True)
class ModelStructure(Check):
    """The model's layers, in order, follow the rule (see structure.py)."""

    layers: tuple

    def __init__(self, layers):
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "_patterns", parse_rule(list(layers)))

    def __call__(self, evidence: Evidence) -> Verdict:
        found = evidence.layers
        verdict = compare(self._patterns, found)
        base_size = dict(next((f.options for f in found if f.kind == "MobileNetV2"), ())).get("input")
        expected_size = f"{evidence.setting.image_size}x{evidence.setting.image_size}x3"
        if verdict.ok and base_size and base_size != expected_size:
            return Verdict("failed", f"the pretrained model's input is {base_size}; build it with input_shape=[*IMAGE_SIZE, 3] ({expected_size})")
        facts = {"layers": [str(f) for f in found], "expected": [str(p) for p in self._patterns], "differs_at": verdict.differs_at}
        return Verdict("passed" if verdict.ok else "failed", verdict.message, evidence=facts)


@register("frozen_base")
@dataclasses.dataclass(frozen=True)
class FrozenBase(Check):
    """The pretrained base is not trainable, and its weights stay the pretrained ones."""

    def __call__(self, evidence: Evidence) -> Verdict:
        base = evidence.base()
        if base.trainable or base.trainable_weights:
            return Verdict(
                "failed",
                f"{base.name} is trainable ({len(base.trainable_weights)} trainable weight tensors): "
                "set pretrained_model.trainable = False before building the model",
            )
        if not evidence.base_is_pretrained:
            return Verdict("failed", f"{base.name}'s weights are not the pretrained ones: keep the default weights='imagenet'")
        try:
            after = evidence.trained_base_weights()
        except Missing:
            return Verdict("passed", "the base is frozen and holds the pretrained weights (not trained: see the other checks)")
        if after is not None and not evidence.matches_pretrained(after):
            return Verdict("failed", f"{base.name}'s weights changed during training although it is marked frozen")
        return Verdict("passed", "the base is frozen: its weights are the pretrained ones before and after training")


@register("compile_settings")
@dataclasses.dataclass(frozen=True)
class CompileSettings(Check):
    """A cross-entropy loss that fits the labels, and the accuracy metric."""

    metric: str = "accuracy"

    def __call__(self, evidence: Evidence) -> Verdict:
        choices = evidence.compile_choices()
        accepted = {self.metric, f"sparse_categorical_{self.metric}", f"categorical_{self.metric}"}
        labels = "one-hot labels" if choices.one_hot else "class-index labels"
        if choices.from_logits:
            return Verdict("failed", f"the loss has from_logits=True but the model ends in softmax: drop from_logits")
        if not accepted & set(choices.metrics):
            found = ", ".join(choices.metrics) or "none"
            return Verdict("failed", f"metrics are [{found}]: add metrics=['{self.metric}'] so training reports accuracy")
        return Verdict("passed", f"loss {choices.loss} (the grader feeds it {labels}) with the {self.metric} metric")


@register("validation_accuracy")
@dataclasses.dataclass(frozen=True)
class ValidationAccuracy(Check):
    """Validation accuracy of the grader's own training run, against a threshold."""

    threshold: float
    bands: tuple = ()

    def __init__(self, threshold, bands=()):
        if not 0 < float(threshold) <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        object.__setattr__(self, "threshold", float(threshold))
        object.__setattr__(self, "bands", tuple(sorted((tuple(map(float, b)) for b in bands), reverse=True)))

    def __call__(self, evidence: Evidence) -> Verdict:
        run = evidence.training()
        accuracy = run.val_accuracy
        epochs = evidence.setting.training.epochs
        facts = {"val_accuracy": accuracy, "threshold": self.threshold}
        said = f"validation accuracy {accuracy:.3f} after {epochs} epochs of training in the grader"
        if accuracy >= self.threshold:
            return Verdict("passed", f"{said} (needed {self.threshold:.2f})", evidence=facts)
        hint = _accuracy_hint(evidence)
        for floor, fraction in self.bands:
            if accuracy >= floor:
                return Verdict("partial", f"{said}: {self.threshold:.2f} earns all points, {floor:.2f} earns {fraction:.0%}{hint}", fraction, facts)
        return Verdict("failed", f"{said}, below the {self.threshold:.2f} the lab expects{hint}", evidence=facts)


def _accuracy_hint(evidence: Evidence) -> str:
    choices = evidence.compile_choices()
    rate = choices.learning_rate
    if isinstance(rate, (int, float)) and rate <= 0:
        return f"; the optimizer's learning rate is {rate}, so the model cannot learn: use optimizer='adam'"
    last = evidence.layers[-1] if evidence.layers else None
    if last is not None and last.kind == "Dense" and last.activation != "softmax" and not choices.from_logits:
        return f"; the last layer is {last}, so the loss reads its raw outputs as probabilities: use activation='softmax'"
    base = next((layer for layer in evidence.model().layers if is_mobilenet(layer)), None)
    if base is not None and base.trainable:
        return "; training the whole pretrained base on this little data spoils its features: freeze it"
    return ""
