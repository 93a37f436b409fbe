"""What the checks look at, computed once per submission in the trusted process.

Each fact is computed on first use and kept: the rebuilt model, the reference
pretrained base, the trusted training run. A fact that cannot be had (the model was
refused, the compile choices cannot train) is kept as its reason, so every check
that needs it can say why.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from grader import artifact as artifact_mod
from grader.artifact import Artifact, Refused
from grader.match import Match
from grader.sandbox import Outcome
from grader.structure import Found
from reference import training as harness
from reference.data import FlowerData
from reference.strategy import Placement
from reference.weights import Weights, pretrained_base


class Missing(Exception):
    """A fact a check needs is not there; the message says why, for the student."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """What is the same for every submission of a batch."""

    image_size: int
    training: harness.Settings
    dataset: FlowerData
    weights: Weights
    placement_preference: str
    cache: object = None  # a reference.cache.FeatureCache, or None for full training always

    @functools.cached_property
    def placement(self) -> Placement:
        from reference.strategy import pick

        return pick(self.placement_preference)

    @functools.cached_property
    def pretrained_weights(self) -> list[np.ndarray]:
        return [np.asarray(w) for w in pretrained_base(self.weights, self.image_size).get_weights()]


class Evidence:
    def __init__(self, setting: Setting, match: Match, outcome: Outcome, artifact: Artifact, answer_keys):
        self.setting, self.match, self.outcome, self.artifact = setting, match, outcome, artifact
        self.answer_keys = tuple(answer_keys)

    # --- the model ---------------------------------------------------------------

    @functools.cached_property
    def _model(self):
        export = self.artifact.export
        if not export.get("found") or self.artifact.model_json is None:
            return None, self.answer_failure() or export.get("problem") or self.why_not_run()
        try:
            return artifact_mod.rebuild(self.artifact.model_json, self.artifact.weights_path), None
        except Refused as refusal:
            return None, str(refusal)

    def why_not_run(self) -> str:
        if self.outcome.stopped_by:
            return self.stopped_message()
        if not self.artifact.log:
            last = [line for line in self.outcome.stderr_tail.splitlines() if line.strip()][-1:] or ["no message"]
            return f"the run stopped before any cell ran (exit code {self.outcome.exit_code}: {last[0][-300:]})"
        return "the run ended before the model could be saved (the answer cell failed, or the run crashed)"

    def answer_failure(self) -> str:
        """If an answer cell raised, say so: it is the cause of whatever is missing after it."""
        for key in self.answer_keys:
            error = (self.artifact.cell(key) or {}).get("error")
            if isinstance(error, dict):
                return f"the answer cell raised {error.get('name', 'an error')}, so there is no model to check: fix the error first"
        return ""

    def stopped_message(self) -> str:
        if self.outcome.stopped_by:
            return f"{self.outcome.limit_message} (in cell {self.outcome.stopped_cell})"
        return ""

    def model(self):
        model, problem = self._model
        if model is None:
            raise Missing(problem)
        return model

    @functools.cached_property
    def layers(self) -> list[Found]:
        return [describe(layer, self) for layer in self.model().layers]

    def base(self):
        """The nested pretrained MobileNetV2 of the model, if any."""
        for layer in self.model().layers:
            if is_mobilenet(layer):
                return layer
        raise Missing("the model has no MobileNetV2 base: start the Sequential list with pretrained_model")

    def matches_pretrained(self, weights) -> bool:
        reference = self.setting.pretrained_weights
        current = [np.asarray(w) for w in weights]
        return len(current) == len(reference) and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(current, reference)
        )

    @functools.cached_property
    def base_is_pretrained(self) -> bool:
        return self.matches_pretrained(self.base().get_weights())

    # --- compile and training -----------------------------------------------------

    @functools.cached_property
    def _compile(self):
        if self.answer_failure() and self.artifact.compile_config is None:
            return None, self.answer_failure()
        try:
            return harness.compile_choices(self.artifact.compile_config), None
        except harness.CompileProblem as problem:
            return None, str(problem)

    def compile_choices(self) -> harness.CompileChoices:
        choices, problem = self._compile
        if choices is None:
            raise Missing(problem)
        return choices

    @functools.cached_property
    def _training(self):
        choices = self.compile_choices()
        try:
            # The trusted run never starts from the student's weights (they could have been
            # fitted to the validation files): the model is made afresh from its config, the
            # base holding the grader's own pretrained weights, the head a seeded initialisation.
            run, model = harness.train(
                self.model(),
                choices,
                self.setting.dataset,
                self.setting.training,
                self.setting.placement,
                cache=self.setting.cache,
                base_weights=self.setting.pretrained_weights,
            )
        except Exception as error:  # the student's model may not train (shapes, dtypes)
            return None, None, f"training the model in the grader failed: {type(error).__name__}: {str(error)[:400]}"
        return run, model, None

    def training(self) -> harness.TrainingRun:
        self.model()  # a refused model is the reason, not a training error
        run, _, problem = self._training
        if run is None:
            raise Missing(problem)
        return run

    def trained_base_weights(self):
        """The base's weights after the trusted run, or None if the run did not train
        through the base (the fast path trains the head on the base's cached outputs)."""
        self.training()
        name = self.base().name
        layer = next((layer for layer in self._training[1].layers if layer.name == name), None)
        return None if layer is None else layer.get_weights()

    def has_training(self) -> bool:
        return "_training" in self.__dict__ and self.__dict__["_training"][0] is not None


def is_mobilenet(layer) -> bool:
    return hasattr(layer, "layers") and layer.name.startswith("mobilenetv2")


def describe(layer, evidence: Evidence | None = None) -> Found:
    """A top-level layer as the structure rules see it."""
    kind = type(layer).__name__
    if is_mobilenet(layer):
        names = {inner.name for inner in layer.layers}
        shape = tuple(layer.input_shape[1:]) if hasattr(layer, "input_shape") else tuple(layer.inputs[0].shape[1:])
        options = (("include_top", str("predictions" in names)), ("input", "x".join(str(s) for s in shape)))
        pretrained = evidence.base_is_pretrained if evidence is not None else None
        return Found("MobileNetV2", options=options, pretrained=pretrained, name=layer.name)
    if kind == "Dense":
        activation = getattr(layer.activation, "__name__", str(layer.activation))
        return Found("Dense", units=int(layer.units), activation=activation, name=layer.name)
    if kind == "Activation":
        activation = getattr(layer.activation, "__name__", str(layer.activation))
        return Found("Activation", activation=activation, name=layer.name)
    return Found(kind, name=layer.name)


def model_summary(model) -> dict:
    """Layer by layer: name, what it is, output shape, parameters; and the totals."""
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except Exception:  # an unbuilt layer has no output yet
            shape = "?"
        rows.append({"name": layer.name, "layer": str(describe(layer)), "output_shape": shape, "params": int(layer.count_params()) if layer.built else 0})
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return {"layers": rows, "total_params": total, "trainable_params": trainable, "non_trainable_params": total - trainable}
