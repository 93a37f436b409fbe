"""What the checks look at, computed once per submission in the trusted process.

Each fact is computed on first use and kept: the rebuilt model, its chain of layers
and base, the trusted training run. A fact that cannot be had because of the
student's work (the model was refused, cannot take the lab's images, the compile
choices cannot train) is kept as its reason (`Missing`), so every check that needs it
can say why. Anything else that goes wrong here is the grader's fault and is raised.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np

from grader.config import cells
from grader.config.match import Match
from grader.faults import Missing, Refused
from grader.grading import artifact as artifact_mod
from grader.grading import integrity
from grader.grading import sample as sample_mod
from grader.grading.artifact import Artifact
from grader.grading.budget import Budget, OverBudget, Watch, model_cost
from grader.grading.structure import Found
from grader.sandbox import Outcome
from reference import graph
from reference import training as harness
from reference.initial import CarriedValues
from reference.data import Dataset, Picture, decoded_pictures
from reference.strategy import Placement
from reference.weights import Weights, pretrained_base

ACTIVATION_LAYERS = {"Activation", "Softmax", "ReLU"}
APPLIES_KEPT = 64
_APPLIES: dict[tuple, str] = {}  # (the model's config's hash, image size, classes) -> Evidence._applies
EXPORT_STEP = "(export)"  # what the sandbox runner calls its export step in its progress (a cell's key otherwise)


@dataclasses.dataclass
class Trusted:
    """The trusted side of a worker (each Evidence's `setting`): what is the same for every
    submission, read from the run's context, and what it costs to compute once (the
    placement, the reference base's weights, the data's pictures)."""

    context: object  # grader.config.context.Context: replaced whole when the run's budget is known (Grader.use)
    cache: object = None  # a reference.cache.FeatureCache, or None for full training always

    @property
    def max_parameters(self) -> int:
        """The largest model rebuilt (0: no bound)."""
        return self.context.max_parameters

    @property
    def budget(self) -> Budget | None:
        """The grader's work on one notebook (None: only max_parameters), known once the lab's solution is graded."""
        return self.context.budget

    def work_budget(self) -> Budget:
        """The budget of the work on one notebook, the parameter bound included."""
        budget = self.budget or Budget()
        return budget if budget.parameters else budget.replace(parameters=self.max_parameters)

    @property
    def lab(self):
        return self.context.manifest.lab

    @property
    def image_size(self) -> int:
        return self.context.manifest.image_size

    @property
    def dataset(self) -> Dataset:
        return self.context.dataset

    @property
    def weights(self) -> Weights | None:
        return self.context.weights

    @property
    def labels(self) -> str:
        return self.context.manifest.labels

    @property
    def fit_labels_to_loss(self) -> bool:
        return self.context.manifest.fit_labels_to_loss

    @property
    def base_name(self) -> str:
        return self.lab.base.application if self.lab.base else ""

    @functools.cached_property
    def training(self) -> harness.Settings:
        manifest = self.context.manifest
        return harness.Settings(manifest.epochs, manifest.batch_size, manifest.seed, manifest.image_size, manifest.settled_above)

    @functools.cached_property
    def placement(self) -> Placement:
        from reference.strategy import pick

        return pick(self.context.manifest.strategy)

    @functools.cached_property
    def pretrained_weights(self) -> list[np.ndarray]:
        if self.weights is None:
            return []
        weights = [np.asarray(w) for w in pretrained_base(self.lab.base, self.weights, self.image_size).get_weights()]
        for weight in weights:
            weight.flags.writeable = False  # the same for every submission: its hash is kept (cache.weights_digest)
        return weights

    @functools.cached_property
    def pictures(self) -> dict[str, Picture]:
        """The data's pictures by the hash of their decoded tensor (what a tf.data lab's sample is compared with)."""
        return decoded_pictures(self.dataset)

    @functools.cached_property
    def is_base(self):
        """The one predicate of "the pretrained base", for checks, fast path and training alike:
        the lab's application, layer for layer (with or without its own pooling), holding
        variables of the pretrained base's shapes."""
        if self.weights is None:
            return lambda layer: False
        return graph.base_by_shapes(self.pretrained_weights, lambda: self.base_architectures)

    @functools.cached_property
    def base_architectures(self) -> tuple:
        """The lab's application as `graph.architecture` reads it, without pooling and with each
        pooling it allows (`pooling='avg'`, `'max'`), built once (without weights) when needed."""
        import keras

        application = getattr(keras.applications, self.lab.base.application)
        shape = (self.image_size, self.image_size, 3)
        return tuple(graph.architecture(application(input_shape=shape, include_top=False, weights=None, pooling=pooling))
                     for pooling in (None, "avg", "max"))


class Evidence:
    def __init__(self, setting: Trusted, match: Match, outcome: Outcome, artifact: Artifact, given: dict,
                 watch: Watch | None = None):
        self.setting, self.match, self.outcome, self.artifact = setting, match, outcome, artifact
        self.student_cells = match.student_cells  # the answers and the cells added to them
        self.given = given  # answer key -> the release's answer cell (its playground version, `given`)
        self.watch = watch or Watch(None)  # the budget of the work here (see grader/grading/budget.py)
        self.review: list[str] = []  # for the instructor: what the checks found the run's reports contradicting

    def unanswered(self, cell) -> bool:
        """Does this answer cell hold only what a playground gave (the lab's, or the codelab's own)?"""
        released = self.given.get(cell.key)
        return cells.unanswered(cell.source, getattr(released, "given", ""), getattr(released, "untouched", ()))

    def untouched(self) -> bool:
        """Is every answer the playground's as given, and nothing added to it: no work of the
        student's at all (every check then gets nothing)?"""
        return bool(self.student_cells) and all(
            self.unanswered(cell) if cell.role == "answer" else not cells.code_lines(cell.source) for cell in self.student_cells)
    def source_notes(self, ran) -> tuple[str, ...]:
        """What the rebuilt model has that no cell of the run (`ran`, the RunCells) writes:
        the run's report of its model is then to be looked at (was to_json or get_config changed?)."""
        text = "\n".join(cell.source for cell in ran)
        notes = []
        try:
            if self.output_activation() == "softmax" and "softmax" not in text.lower():
                notes.append("the rebuilt model ends in softmax, which no cell of the run writes")
            if self.chain.base is not None and not self.base().trainable_weights and "trainable" not in text:
                notes.append("the rebuilt model's base is frozen, but no cell of the run sets trainable")
        except Missing:
            pass
        return tuple(notes)

    def over_budget(self) -> str:
        """Why the work on this notebook was stopped ("" if it was not)."""
        return self.watch.reason

    # --- the run -------------------------------------------------------------------

    def why_not_run(self) -> str:
        if self.outcome.stopped_by:
            return self.stopped_message()
        if not self.artifact.log:
            last = [line for line in self.outcome.stderr_tail.splitlines() if line.strip()][-1:] or ["no message"]
            return f"the run stopped before any cell ran (exit code {self.outcome.exit_code}: {last[0][-300:]})"
        return f"the run ended before the {self.setting.lab.kind} could be exported (the answer cell failed, or the run crashed)"

    def answer_failure(self) -> str:
        """If a cell of the answer raised, say so: it is the cause of whatever is missing after it."""
        for cell in self.student_cells:
            error = (self.artifact.cell(cell.key) or {}).get("error")
            if isinstance(error, dict):
                which = "the answer cell" if cell.role == "answer" else "a cell you added to the answer"
                return f"{which} raised {error.get('name', 'an error')}, so there is no {self.setting.lab.kind} to check: fix the error first"
        return ""

    def stopped_message(self) -> str:
        if self.outcome.stopped_by:
            where = f" (in cell {self.outcome.stopped_cell})" if self.outcome.stopped_cell else ""
            return f"{self.outcome.limit_message}{where}"
        return ""

    # --- a dataset (a tf.data lab) -------------------------------------------------

    @functools.cached_property
    def _sample(self):
        export, name = self.artifact.export, self.setting.lab.answer
        if export.get("found") and "sample" in export:
            try:
                return sample_mod.read(export), None
            except ValueError as error:
                return None, f"the run's sample of `{name}` cannot be read ({error})"
        if self.outcome.stopped_by and self.outcome.stopped_cell == EXPORT_STEP:
            return None, (f"reading the first elements of `{name}` did not finish: {self.outcome.limit_message}. The pipeline "
                          "never ends or does too much per element (a repeat() before a filter that keeps nothing, a huge "
                          "shuffle buffer, very large elements)")
        problem = self.answer_failure() or export.get("problem") or self.why_not_run()
        return None, problem + sample_mod.read_hint(problem)

    def sample(self) -> sample_mod.Sample:
        """The first elements the answer's dataset yielded in the sandbox."""
        found, problem = self._sample
        if found is None:
            raise Missing(problem)
        return found

    # --- the model -------------------------------------------------------------------

    @functools.cached_property
    def _model(self):
        export = self.artifact.export
        if not export.get("found") or self.artifact.model_json is None:
            return None, self.answer_failure() or export.get("problem") or self.why_not_run()
        if self.watch.fired:
            return None, self.watch.reason
        try:
            return artifact_mod.rebuild(self.artifact.model_json, self.artifact.weights_path, budget=self.setting.work_budget()), None
        except Refused as refusal:
            return None, str(refusal)
        except OverBudget:
            return None, self.watch.reason

    def model(self):
        model, problem = self._model
        if model is None:
            raise Missing(problem)
        return model

    @functools.cached_property
    def chain(self) -> graph.Chain:
        return graph.chain(self.model(), self.setting.is_base)

    @functools.cached_property
    def layers(self) -> list[Found]:
        """The chain's layers as the structure rules see them."""
        if self.chain.problem:
            raise Missing(self.chain.problem)
        found = fold_activations(self._expanded([self.describe(layer, index) for index, layer in enumerate(self.chain.layers)]))
        if found and found[-1].activation == "linear" and self._from_logits():
            found[-1] = dataclasses.replace(found[-1], activation="softmax", note="linear, with softmax in the loss: from_logits=True")
        return found

    def _expanded(self, found: list[Found]) -> list[Found]:
        """The layers as what they do: a base made with its own pooling (`pooling='avg'`)
        is the base, then that pooling, so that a rule asking for a reduction to one vector
        after the base is met by it, and no one is told to add what would break the model."""
        if self.chain.base is None:
            return found
        inner = getattr(self.chain.base_layer, "layers", [])
        pooling = type(inner[-1]).__name__ if inner else ""
        if pooling not in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            return found
        at = next(n for n, layer in enumerate(found) if layer.index == self.chain.base)
        own = "avg" if pooling == "GlobalAveragePooling2D" else "max"
        return found[: at + 1] + [Found(pooling, name=inner[-1].name, index=self.chain.base, note=f"the base's own pooling='{own}'")] + found[at + 1 :]

    def _from_logits(self) -> bool:
        choices, _ = self._compile
        return choices is not None and choices.from_logits

    def describe(self, layer, index: int) -> Found:
        """One layer of the chain as the structure rules see it."""
        if index == self.chain.base:
            shape = tuple(layer.inputs[0].shape[1:])
            options = (("include_top", "False"), ("input", "x".join(str(s) for s in shape)))
            return Found(self.setting.base_name, options=options, pretrained=self.base_is_pretrained, name=layer.name, index=index)
        return describe(layer, index)

    def output_activation(self) -> str | None:
        """The model's last activation as written (before any from_logits reading), or None."""
        found = fold_activations([self.describe(layer, index) for index, layer in enumerate(self.chain.layers)])
        return found[-1].activation if found else None

    def base(self):
        """The pretrained base of the model."""
        if self.chain.problem:
            raise Missing(self.chain.problem)
        if self.chain.base is None:
            raise Missing(f"the model has no pretrained {self.setting.base_name} base: "
                          + self.setting.lab.hint("add_base", f"put the pretrained {self.setting.base_name} first in the model"))
        return self.chain.base_layer

    def matches_pretrained(self, weights) -> bool:
        reference = self.setting.pretrained_weights
        current = [np.asarray(w) for w in weights]
        return len(current) == len(reference) and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(current, reference))

    @functools.cached_property
    def base_is_pretrained(self) -> bool:
        return self.matches_pretrained(self.base().get_weights())

    @functools.cached_property
    def _applies(self) -> str:
        """Why the model cannot classify a batch of the lab's images ("" if it can). The
        answer from the output's shape is the config's, not the weights': it is kept for
        the next submission of the same config (calling the model costs a quarter of a
        second at the codelab's scale)."""
        size, classes = self.setting.image_size, len(self.setting.dataset.classes)
        self.model()
        key = (hashlib.sha256(self.artifact.model_json.encode("utf-8", errors="replace")).hexdigest(), size, classes)
        if key in _APPLIES:
            return _APPLIES[key]
        try:
            output = self.model()(np.zeros((2, size, size, 3), np.float32), training=False)
        except Exception as error:  # the student's model: shapes that do not fit (not kept: it may be a passing failure)
            return f"the model cannot take the lab's {size}x{size}x3 images: {type(error).__name__}: {str(error)[:300]}"
        _APPLIES[key] = _output_problem(tuple(int(d) for d in output.shape[1:]), classes,
                                        self.setting.lab.hint("to_vector", "put Flatten or GlobalAveragePooling2D before the last Dense layer"))
        while len(_APPLIES) > APPLIES_KEPT:
            _APPLIES.pop(next(iter(_APPLIES)))
        return _APPLIES[key]


    # --- compile and training -----------------------------------------------------

    @functools.cached_property
    def _compile(self):
        if self.artifact.compile_config is None and (self.answer_failure() or self.outcome.stopped_by or self.outcome.exit_code):
            # nothing was exported because the answer failed or the run ended early: say that,
            # not "not compiled" (the student may well have compiled it)
            return None, self.answer_failure() or self.why_not_run()
        try:
            config = artifact_mod.vetted(self.artifact.compile_config, "compile settings") if self.artifact.compile_config else None
            choices = harness.compile_choices(config, self.setting.labels == "one_hot")
        except (harness.CompileProblem, Refused) as problem:
            return None, str(problem)
        contradicted = integrity.loss_problem(choices.loss, self.student_cells)
        if contradicted:
            self.review.append(contradicted)
            return None, contradicted
        return choices, None

    def compile_choices(self) -> harness.CompileChoices:
        choices, problem = self._compile
        if choices is None:
            raise Missing(problem)
        return choices

    def label_problem(self) -> str:
        """Why the loss cannot train on the lab's labels ("" if it can, or if the assignment forgives it)."""
        choices = self.compile_choices()
        lab_one_hot = self.setting.labels == "one_hot"
        if choices.one_hot == lab_one_hot or self.setting.fit_labels_to_loss:
            return ""
        if lab_one_hot:
            return (f"the loss {choices.loss} expects class-index labels, but this lab's labels are one-hot vectors, "
                    "so model.fit would fail: use loss='categorical_crossentropy'")
        return (f"the loss {choices.loss} expects one-hot labels, but this lab's labels are class indices, so model.fit "
                "would fail ('Arguments target and output must have the same rank'): use loss='sparse_categorical_crossentropy'")

    @functools.cached_property
    def _training(self):
        self.model()  # a refused model is the reason, not a training problem
        if self.watch.fired:
            raise Missing(self.watch.reason)
        if self.chain.problem:
            raise Missing(self.chain.problem)
        if self._applies:
            raise Missing(self._applies)
        try:
            choices = self.compile_choices()
        except Missing as missing:  # what the compile check says, and that nothing could be trained
            raise Missing(f"not trained, as the notebook's own fit could not train it: {missing}") from None
        if self.label_problem():
            raise Missing(f"not trained: {self.label_problem()}")
        # The trusted run never starts from the student's weights (they could have been
        # fitted to the validation files): the model is made afresh from its layers' configs,
        # the base holding the grader's own pretrained weights, the head a seeded initialisation.
        # A failure from here on is the grader's, not the student's: it is raised.
        try:
            harness.replaced_initial_values(self.chain)
        except CarriedValues as problem:
            raise Missing(f"not trained: {problem}") from None
        try:
            return harness.train(
                self.chain,
                choices,
                self.setting.dataset,
                self.setting.training,
                self.setting.placement,
                cache=self.setting.cache,
                base_weights=self.setting.pretrained_weights,
            )
        except OverBudget:
            raise Missing(f"not trained: {self.watch.reason}") from None

    def training(self) -> harness.TrainingRun:
        return self._training[0]

    def trained_base_weights(self):
        """The base's weights after the trusted run, or None if the run did not train
        through the base (the fast path trains the head on the base's cached outputs)."""
        base = self.base()
        trained = self._training[1]
        # by its place, not its name: a run kept from an earlier notebook of the same model
        # (reference.training) names its layers as that notebook did
        layers = list(trained.layers)
        at = self.chain.base
        if at is None or at >= len(layers) or graph.shapes_of(layers[at].weights) != graph.shapes_of(base.weights):
            return None  # the fast path trained the head alone, on the base's cached outputs
        return layers[at].get_weights()

    def has_training(self) -> bool:
        return "_training" in self.__dict__


def _output_problem(shape: tuple, classes: int, to_vector: str = "put Flatten or GlobalAveragePooling2D before the last Dense layer") -> str:
    """What is wrong with a model's output of `shape` per image for a lab of `classes` classes
    ("" if nothing); `to_vector`: the lab's words for how a picture's features become one vector."""
    if len(shape) != 1:
        return f"the model gives an output of shape {shape} per image, not one score per class: {to_vector}"
    if shape[0] != classes:
        # one score per class: with more, the lab's one-hot labels do not fit the output (the
        # student's own fit fails), and class-index labels leave the extra scores meaningless
        compared = "fewer than" if shape[0] < classes else "but"
        return (f"the model gives {shape[0]} outputs per image, {compared} the lab has {classes} classes: "
                f"end in Dense({classes}, activation='softmax'), one unit per class")
    return ""


def describe(layer, index: int = -1) -> Found:
    """A layer as the structure rules see it (the base is described by Evidence)."""
    kind = type(layer).__name__
    activation = _activation_name(layer)
    if kind == "Dense":
        return Found("Dense", units=int(layer.units), activation=activation, name=layer.name, index=index)
    if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv1D"):
        options = (("kernel_size", _size(layer.kernel_size)), ("strides", _size(layer.strides)), ("padding", str(layer.padding)))
        return Found(kind, units=getattr(layer, "filters", None), activation=activation, options=options, name=layer.name, index=index)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        options = (("pool_size", _size(layer.pool_size)), ("strides", _size(layer.strides)), ("padding", str(layer.padding)))
        return Found(kind, options=options, name=layer.name, index=index)
    if kind in ("Dropout", "SpatialDropout2D"):
        return Found(kind, options=(("rate", f"{float(layer.rate):g}"),), name=layer.name, index=index)
    if kind == "Softmax":
        return Found("Softmax", activation="softmax", name=layer.name, index=index)
    if kind == "ReLU":
        plain = not getattr(layer, "max_value", None) and not getattr(layer, "negative_slope", 0) and not getattr(layer, "threshold", 0)
        return Found("ReLU", activation="relu" if plain else "relu (bounded or leaky)", name=layer.name, index=index)
    if kind == "Activation":
        return Found("Activation", activation=activation, name=layer.name, index=index)
    if graph.is_nested(layer):
        parameters = sum(int(np.prod(w.shape)) for w in layer.weights)
        return Found(kind, name=layer.name, index=index, note=f"a nested model '{layer.name}' of {parameters:,} parameters")
    return Found(kind, name=layer.name, index=index)


def _size(value) -> str:
    """A kernel, pool or stride size as a rule writes it: 3 for (3, 3), 3x5 otherwise."""
    sizes = tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))
    return str(sizes[0]) if len(set(sizes)) == 1 else "x".join(str(v) for v in sizes)


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return None if activation is None else getattr(activation, "__name__", str(activation))


def fold_activations(layers: list[Found]) -> list[Found]:
    """A layer without activation followed by an activation layer (`Dense(5)`, then
    `Activation('softmax')`) is that layer with that activation."""
    folded: list[Found] = []
    for layer in layers:
        previous = folded[-1] if folded else None
        if layer.kind in ACTIVATION_LAYERS and previous is not None and previous.activation == "linear":
            folded[-1] = dataclasses.replace(previous, activation=layer.activation)
        else:
            folded.append(layer)
    return folded


def model_summary(model, chain: graph.Chain | None = None, base_name: str = "pretrained base") -> dict:
    """Layer by layer (the chain's, when the model is one): name, what it is, output shape,
    parameters; and the totals."""
    rows = []
    for index, layer in enumerate(chain.layers if chain is not None and not chain.problem else model.layers):
        try:
            shape = str(tuple(layer.output.shape))
        except Exception:  # an unbuilt layer has no output yet
            shape = "?"
        described = f"{base_name} (the pretrained base)" if chain is not None and index == chain.base else str(describe(layer))
        rows.append({"name": layer.name, "layer": described, "output_shape": shape, "params": int(layer.count_params()) if layer.built else 0})
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    cost = model_cost(model)  # what the budget of a class is made from, for the lab's solution
    return {"layers": rows, "total_params": total, "trainable_params": trainable, "non_trainable_params": total - trainable,
            "gflops_per_image": round(cost.gflops, 4), "activations_per_image": cost.activations}
