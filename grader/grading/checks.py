"""Checks: small callables registered by name and declared in the manifest.

A check factory takes the manifest's parameters and returns a frozen callable with a
readable repr; called on a submission's Evidence it returns a `Verdict`. `run_check`
turns that into a CheckResult with points, and turns a crash into status "error".
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable

from grader.config import cells
from grader.config.manifest import CheckSpec
from grader.faults import GraderFault, ManifestError
from grader.grading import sample as sample_mod
from grader.grading.budget import OverBudget
from grader.grading.evidence import Evidence, Missing
from grader.grading.structure import PRETRAINED_FIX, compare, parse_rule
from grader.results import CheckResult

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
        # a dataclass writes a repr of its own (its class's name): the manifest's name is the one
        # results and reports show, whoever wrote the check
        factory.__repr__ = Check.__repr__
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
    except (TypeError, ValueError, ManifestError) as error:
        raise ManifestError(f"check {spec.id!r} ({spec.check}): bad parameters: {error}") from None


def run_check(spec: CheckSpec, check: Check, evidence: Evidence) -> CheckResult:
    """The check's result; a check that crashes is the grader's fault, never a grade."""
    try:
        verdict = check(evidence)
    except Missing as missing:
        verdict = Verdict("failed", str(missing))
    except OverBudget:  # the grader's work on the notebook went over its budget here: the notebook's verdict
        verdict = Verdict("failed", evidence.over_budget())
    except GraderFault:
        raise
    except Exception as error:
        raise GraderFault.from_error(error, f"the check {spec.id!r} failed") from error
    fraction = {"passed": 1.0, "partial": verdict.fraction}.get(verdict.status, 0.0)
    return CheckResult(
        spec.id, spec.title, verdict.status, round(spec.points * fraction, 2), spec.points, verdict.message, repr(check), verdict.evidence
    )


# --- the checks ------------------------------------------------------------------------


@register("answer_cells_run")
@dataclasses.dataclass(frozen=True)
class AnswerCellsRun(Check):
    """Every answer cell was filled in, and it and the cells added to it ran without an error."""

    def __call__(self, evidence: Evidence) -> Verdict:
        if evidence.outcome.stopped_by in ("memory", "processes", "cpu", "disk_full", "tampered"):
            return Verdict("failed", evidence.stopped_message())
        for cell in evidence.student_cells:
            if cell.role == "answer" and evidence.unanswered(cell):
                placeholder = next((p for p in cells.PLACEHOLDERS if p in cell.source), "")
                where = f" (`{placeholder}`)" if placeholder else ""
                return Verdict("failed", f"the answer cell holds only the playground's placeholders{where}: write your code in it")
        for cell in evidence.student_cells:
            which = "the answer cell" if cell.role == "answer" else "the cell you added"
            entry = evidence.artifact.cell(cell.key)
            if entry is None:
                if evidence.outcome.stopped_by:
                    return Verdict("failed", f"{which} did not finish: {evidence.stopped_message()}")
                if evidence.outcome.last_started == cell.key:
                    return Verdict("failed", f"the run ended in the middle of {which} (exit code {evidence.outcome.exit_code}), so nothing after it ran")
                above = [c.key for c in evidence.match.added_above if c.key == evidence.outcome.last_started]
                if above:
                    return Verdict("failed", f"the run ended in the middle of the cell you added above the answer "
                                             f"({_added_cell(evidence, above[0])}, exit code {evidence.outcome.exit_code}), "
                                             "so the answer never ran: take that cell out")
                return Verdict("failed", f"{which} did not run: {evidence.why_not_run()}")
            if entry.get("status") == "error":
                error = entry.get("error") or {}
                where = _quote_line(cell.source, error.get("line"))
                return Verdict(
                    "failed",
                    f"{which} raised {error.get('name', 'an error')}{where}: {error.get('message', '')}{_not_run_definer(evidence, error)}"
                    f"{_known_fix(error)}",
                    evidence={"traceback": str(error.get("traceback", ""))},
                )
            if evidence.outcome.stopped_by and evidence.outcome.stopped_cell == cell.key:
                return Verdict("failed", evidence.stopped_message())
        broken = _lab_cell_broken_after_added(evidence)
        if broken:
            return Verdict("failed", broken)
        added = sum(1 for cell in evidence.student_cells if cell.role == "added")
        said = "the answer cell ran without errors" + (f", with the {added} cell(s) you added to it" if added else "")
        return Verdict("passed", said + _above_failures(evidence))


# TensorFlow's errors whose message does not say what to change, and what a teacher would add
KNOWN_FIXES = (
    ("Cannot add tensor to the batch: number of elements does not match",
     " (the pictures are not all the same size, so they cannot go in one batch: leave batching for later, after they "
     "are resized to one size)"),
    ("Cannot batch tensors with different shapes",
     " (the pictures are not all the same size, so they cannot go in one batch: leave batching for later, after they "
     "are resized to one size)"),
)


def _known_fix(error: dict) -> str:
    message = str(error.get("message", ""))
    return next((fix for text, fix in KNOWN_FIXES if text in message), "")


def _not_run_definer(evidence: Evidence, error: dict) -> str:
    """For a NameError: the cell of the notebook that defines the name but did not run, and why."""
    import re

    found = re.search(r"name '([A-Za-z_][A-Za-z0-9_]*)' is not defined", str(error.get("message", "")))
    if error.get("name") != "NameError" or not found:
        return ""
    for cell in evidence.match.skipped:
        if found.group(1) in cells.assigned_names(cell.source):
            return (f" (`{found.group(1)}` is set in a cell of your notebook that the grader did not run: {cell.reason}; "
                    "move what the answer needs into a cell of its own, next to the answer)")
    return ""


def _lab_cell_broken_after_added(evidence: Evidence) -> str:
    """A cell of the lab's that failed after a cell the student added above the answer ran:
    the added cell is the likely cause, and the student's to fix."""
    added = None
    for entry in evidence.artifact.log:
        if entry.get("role") == "above":
            added = added or entry.get("key")
        elif entry.get("role") == "locked" and entry.get("status") == "error" and added:
            error = entry.get("error") or {}
            return (f"the lab's cell {entry.get('key')!r} raised {error.get('name', 'an error')} after the cell you added above "
                    f"the answer ({_added_cell(evidence, added)}) ran: {str(error.get('message', ''))[:300]}; take that cell out, or make it "
                    "leave the lab's names as they are")
    return ""


def _above_failures(evidence: Evidence) -> str:
    """What the cells added above the answer did wrong, said but not graded."""
    failed = [_added_cell(evidence, cell.key) for cell in evidence.match.added_above
              if (evidence.artifact.cell(cell.key) or {}).get("status") == "error"]
    if not failed:
        return ""
    return (f" (the cell(s) you added above the answer, {', '.join(failed)}, raised an error in the grader's run and were "
            "left out; that is not graded: it may be a line only Colab runs)")


def _added_cell(evidence: Evidence, key: str) -> str:
    """A cell the student added above the answer, as they know it: by its first line (the
    grader's own name for it, an anchor and a number, means nothing to them)."""
    cell = next((c for c in evidence.match.added_above if c.key == key), None)
    first = next((line.strip() for line in (cell.source if cell else "").splitlines() if line.strip()), "")
    if len(first) > 60:
        first = first[:57] + "..."
    return f"the one that begins `{first}`" if first else "an empty one"


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
    parameters: tuple = ()  # (at least, at most) parameters of the whole model, if bounded
    expected: str = ""  # the model the lab asks for, in the lab's words (messages say it; else the rule's words)

    def __init__(self, layers, parameters=(), expected=""):
        if parameters and (len(parameters) != 2 or not all(isinstance(p, int) and p >= 0 for p in parameters)
                           or parameters[0] > parameters[1]):
            raise ValueError(f"parameters must be [at least, at most], got {parameters!r}")
        if not isinstance(expected, str):
            raise ValueError(f"expected must be a sentence, got {expected!r}")
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "parameters", tuple(parameters))
        object.__setattr__(self, "expected", expected)
        object.__setattr__(self, "_patterns", parse_rule(list(layers)))

    def __call__(self, evidence: Evidence) -> Verdict:
        found = evidence.layers
        lab = evidence.setting.lab
        verdict = compare(self._patterns, found, self.expected, lab.hint("pretrained_weights", PRETRAINED_FIX))
        base_size = dict(next((f.options for f in found if f.kind == evidence.setting.base_name), ())).get("input")
        expected_size = f"{evidence.setting.image_size}x{evidence.setting.image_size}x3"
        facts = {"layers": [str(f) for f in found], "expected": list(self._patterns.texts), "differs_at": verdict.differs_at}
        if verdict.ok and base_size and base_size != expected_size:
            build = lab.hint("input_shape", "build it for the lab's images")
            return Verdict("failed", f"the pretrained model's input is {base_size}; {build} ({expected_size})", evidence=facts)
        if verdict.ok and self.parameters:
            count = evidence.model().count_params()
            low, high = self.parameters
            facts["parameters"] = count
            if not low <= count <= high:
                bound = f"at most {high:,}" if count > high else f"at least {low:,}"
                return Verdict("failed", f"the model has {count:,} parameters; the lab asks for {bound}", evidence=facts)
        return Verdict("passed" if verdict.ok else "failed", verdict.message, evidence=facts)


@register("frozen_base")
@dataclasses.dataclass(frozen=True)
class FrozenBase(Check):
    """No weight of the pretrained base can change in training (whichever flags made it so),
    and its weights are the pretrained ones before and after training."""

    def __call__(self, evidence: Evidence) -> Verdict:
        base = evidence.base()
        trainable = base.trainable_weights
        if trainable:
            layers = sorted({variable.path.split("/")[-2] for variable in trainable if "/" in variable.path})
            example = f", e.g. in {layers[0]}" if layers else ""
            said = f"{len(trainable)} weight tensors of the pretrained base {base.name} would change in training{example}: "
            for cell in evidence.student_cells:  # `trainable == False`: a comparison, thrown away, where `=` was meant
                compared = cells.compared_not_set(cell.source, "trainable")
                if compared:
                    line, text = compared[0]
                    return Verdict("failed", said + f"line {line}, `{text}`, compares the flag with False (==) and sets "
                                   "nothing: assign it with one =, `" + text.replace("==", "=").replace(" is ", " = ") + "`")
                commented = cells.commented_out_assignments(cell.source, "trainable")
                if commented:
                    line, text = commented[0]
                    return Verdict("failed", said + f"line {line}, `{text}`, is a comment, so it does not run: take out the # "
                                   "at its start")
            return Verdict("failed", said + evidence.setting.lab.hint("freeze", "set the base's trainable to False before building the model"))
        if not evidence.base_is_pretrained:
            return Verdict("failed", f"{base.name}'s weights are not the pretrained ones: "
                           + evidence.setting.lab.hint("pretrained_weights", PRETRAINED_FIX))
        try:
            after = evidence.trained_base_weights()
        except Missing:
            return Verdict("passed", "the base is frozen and holds the pretrained weights (not trained: see the other checks)")
        if after is not None and not evidence.matches_pretrained(after):
            return Verdict("failed", f"{base.name}'s weights changed during training although none of them is trainable")
        return Verdict("passed", "the base is frozen: its weights are the pretrained ones before and after training")


@register("compile_settings")
@dataclasses.dataclass(frozen=True)
class CompileSettings(Check):
    """A cross-entropy loss that fits the lab's labels and the model's output, and the accuracy metric."""

    metric: str = "accuracy"

    def __call__(self, evidence: Evidence) -> Verdict:
        choices = evidence.compile_choices()
        accepted = {self.metric, "acc", f"sparse_categorical_{self.metric}", f"categorical_{self.metric}"}
        if choices.from_logits and _output_activation(evidence) == "softmax":
            return Verdict("failed", "the model already ends in softmax, and the loss has from_logits=True, so softmax "
                           "would be applied twice: drop from_logits=True (it is for a last layer without activation)")
        problem = evidence.label_problem()
        if problem:
            return Verdict("failed", problem)
        if not accepted & set(choices.metrics):
            found = ", ".join(choices.metrics) or "none"
            return Verdict("failed", f"metrics are [{found}]: add metrics=['{self.metric}'] so training reports accuracy")
        lab_one_hot = evidence.setting.labels == "one_hot"
        if choices.one_hot != lab_one_hot:
            fed = f"; the grader feeds it {'one-hot' if choices.one_hot else 'class-index'} labels (this assignment forgives a loss that does not fit the lab's labels)"
        else:
            fed = f" on the lab's {'one-hot' if lab_one_hot else 'class-index'} labels"
        logits = " from the model's logits (from_logits=True)" if choices.from_logits else ""
        return Verdict("passed", f"loss {choices.loss}{logits}{fed}, with the {self.metric} metric")


@register("strategy_scope")
@dataclasses.dataclass(frozen=True)
class StrategyScope(Check):
    """The model is built and compiled inside `with strategy.scope():` (the lab's strategy,
    a TPU's or the GPUs' mirrored one): read in the answer's source (every statement that
    makes the model or compiles it is inside the scope) and in the run (the model's
    variables were made under the notebook's `strategy`)."""

    strategy: str = "strategy"  # the name the lab's cells give their distribution strategy

    def __call__(self, evidence: Evidence) -> Verdict:
        answer = evidence.setting.lab.answer
        evidence.model()  # a model that is not there, or was refused: that is the reason
        fix = (f"build the model and compile it inside `with {self.strategy}.scope():`, so that its variables are made on "
               "the TPU (or mirrored on every GPU)")
        for cell in evidence.student_cells:
            outside = cells.outside_scope(cell.source, answer)
            if outside:
                line, text = outside[0]
                what = "compiles the model" if ".compile(" in text else "makes the model"
                where = "the answer cell" if cell.role == "answer" else "a cell you added"
                return Verdict("failed", f"line {line} of {where}, `{text}`, {what} outside `with {self.strategy}.scope():`: {fix}")
        scopes = evidence.artifact.export.get("scopes")
        if isinstance(scopes, list) and self.strategy not in scopes:
            return Verdict("failed", f"the model's variables were not made under `{self.strategy}` (the run's model was made "
                           f"outside its scope, e.g. in a function called elsewhere): {fix}")
        return Verdict("passed", f"the model is built and compiled inside `with {self.strategy}.scope():`")


def _output_activation(evidence: Evidence) -> str | None:
    try:
        return evidence.output_activation()
    except Missing:
        return None


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
        trained = max((len(values) for values in run.history.values()), default=epochs)
        facts = {"val_accuracy": accuracy, "threshold": self.threshold}
        if trained < epochs:  # stopped once the verdict was settled (reference/training.py)
            said = f"validation accuracy {accuracy:.3f} after {trained} of {epochs} epochs of training in the grader (it stopped there: settled)"
        else:
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
    if last is not None and last.activation == "linear" and not choices.from_logits:
        return f"; the last layer is {last}, so the loss reads its raw outputs as probabilities: use activation='softmax'"
    base = evidence.chain.base_layer
    if base is not None and base.trainable_weights:
        return "; training the whole pretrained base on this little data spoils its features: freeze it"
    frozen = [layer.name for layer in evidence.chain.head if layer.weights and not layer.trainable]
    if frozen:
        names = ", ".join(frozen[:3]) + (", ..." if len(frozen) > 3 else "")
        return (f"; {len(frozen)} of your own layers are frozen (trainable=False: {names}): they keep their random "
                "starting weights and never learn, so the model cannot either: take trainable=False out")
    return ""


# --- a dataset (a tf.data lab: see grader/grading/sample.py) ----------------------------------


def _sample_or_empty(evidence: Evidence):
    """The run's sample, or a failed verdict when the dataset yielded nothing."""
    sample = evidence.sample()
    if not sample.elements:
        return None, Verdict("failed", f"`{evidence.setting.lab.answer}` yields no element: check that the pattern "
                             "you list matches the data's files, and that no filter drops everything")
    return sample, None


@register("dataset_elements")
@dataclasses.dataclass(frozen=True)
class DatasetElements(Check):
    """Every sampled element is one (image, label) pair, not batched, its label of the lab's form."""

    labels: str = "name"  # name, index or one_hot (see grader/grading/sample.py)

    def __post_init__(self):
        if self.labels not in sample_mod.LABELS:
            raise ValueError(f"labels must be one of {', '.join(sample_mod.LABELS)}, got {self.labels!r}")

    def __call__(self, evidence: Evidence) -> Verdict:
        sample, empty = _sample_or_empty(evidence)
        if empty is not None:
            return empty
        for element in sample.elements:
            problem = sample_mod.element_problem(element, self.labels)
            if problem:
                return Verdict("failed", problem)
        return Verdict("passed", f"{len(sample.elements)} elements read, each a (picture, label) pair with "
                       f"{sample_mod.LABELS[self.labels]}, e.g. {sample_mod.describe(sample.elements[0])}")


@register("dataset_pictures")
@dataclasses.dataclass(frozen=True)
class DatasetPictures(Check):
    """Every sampled image is one of the data's pictures as a JPEG decoder gives it (same
    shape and dtype, pixels within what decoders differ by), no picture twice in the
    sample, and the dataset has one element per file of the data."""

    dtype: str = "uint8"

    def __call__(self, evidence: Evidence) -> Verdict:
        sample, empty = _sample_or_empty(evidence)
        if empty is not None:
            return empty
        pictures, seen, other_decoder = evidence.setting.pictures, {}, 0
        for element in sample.elements:
            found = sample_mod.pair(element)
            image = found[0] if found else element[0]
            problem = sample_mod.image_form_problem(image, self.dtype)
            picture = sample_mod.picture_of(image, pictures)
            if not problem and picture is None:
                problem = sample_mod.image_mismatch(image, pictures, self.dtype)
            if problem:
                return Verdict("failed", problem)
            other_decoder += pictures.get(image.sha256) is None
            seen.setdefault(picture.source, 0)
            seen[picture.source] += 1
        twice = [source for source, count in seen.items() if count > 1]
        if twice:
            return Verdict("failed", f"{twice[0]} comes {seen[twice[0]]} times in the first {len(sample.elements)} elements: "
                           "list each file once (no repeat() in this step)")
        coverage = _coverage_problem(sample, len(evidence.setting.dataset.files))
        if coverage:
            return Verdict("failed", coverage)
        decoders = f" ({other_decoder} by another JPEG decoder, a level or two apart, as decoders are)" if other_decoder else ""
        return Verdict("passed", f"the {len(sample.elements)} pictures read are {len(seen)} different files of the data, "
                       f"decoded as they are{decoders}, and the dataset has one picture for each of its "
                       f"{len(evidence.setting.dataset.files)} files")


def _coverage_problem(sample: sample_mod.Sample, files: int) -> str:
    """Why the dataset does not have one element per file of the data ("" if it does, or if
    its size is not known)."""
    size = sample.size
    if size is None:
        return ""
    if size == -1:
        return ("the dataset never ends (a repeat()): this step yields each file's picture once; repeating is for "
                "training, later")
    if size < files:
        return (f"the dataset yields {size} pictures, but the data has {files} files: keep every file (no take(), skip() "
                "or filter() in this step)")
    if size > files:
        many = size if sample.cardinality >= 0 else f"more than {files}"
        return f"the dataset yields {many} elements, but the data has {files} files: each file once (no repeat() in this step)"
    return ""


@register("dataset_labels")
@dataclasses.dataclass(frozen=True)
class DatasetLabels(Check):
    """Every sampled label names the class of its picture (the folder its file is in),
    in whichever form the label has (its form is dataset_elements' to judge), the picture
    known even if it was changed after decoding (its decode is dataset_pictures' to judge)."""

    def __call__(self, evidence: Evidence) -> Verdict:
        sample, empty = _sample_or_empty(evidence)
        if empty is not None:
            return empty
        pictures, classes = evidence.setting.pictures, evidence.setting.dataset.classes
        checked = 0
        for element in sample.elements:
            found = sample_mod.pair(element)
            if found is None:
                return Verdict("failed", f"an element is {sample_mod.describe(element)}, with no label beside its picture: "
                               "return image, label from the function you map")
            image, label, _ = found
            if sample_mod.batched((image, label)):  # the elements' mistake, not the labels': as below
                return Verdict("partial", "the elements come in batches, so no label can be checked against its picture: "
                               "leave batching for later (see the elements' check)", 0.5)
            picture = sample_mod.resembles(image, pictures)
            said = sample_mod.class_of(label, classes)
            if said is not None and (picture is None or classes[picture.label] == said):
                checked += picture is not None
                continue
            return Verdict("failed", sample_mod.label_mismatch(label, said, picture, classes))
        if not checked:  # the pictures' mistake, not the labels': half the points until they can be told
            return Verdict("partial", "every label is one of the classes, but no picture is one of the data's files, so "
                           "no label can be checked against its file's folder: fix the pictures (see their check)", 0.5)
        return Verdict("passed", f"each of the {len(sample.elements)} labels names its picture's folder "
                       f"({checked} checked against the file they came from)")
