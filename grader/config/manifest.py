"""The assignment manifest (`assignment.toml`), parsed once into typed values.

Every key is declared once below, with its type, default and a one-line description;
the parser, the error messages and the generated reference (`docs/manifest.md`,
`python -m grader.config.manifest`) all come from those declarations. An unknown table or
key is an error that names the closest valid one, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from typing import Any, Callable

from grader.faults import ManifestError
from reference.weights import Base

STRATEGIES = ("auto", "tpu", "gpu", "cpu")
COUNTS = ("latest", "best")
VISIBILITY = ("visible", "hidden", "after_due_date", "after_published")
LABELS = ("class_index", "one_hot")
REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Key:
    """One manifest key: its TOML type(s), default (REQUIRED if none), description and unit."""

    name: str
    kind: type | tuple[type, ...]
    default: Any
    help: str
    valid: Callable[[Any], str] | None = None  # returns a problem, or "" if the value is fine
    unit: str = ""  # of a number: what it counts (MiB, CPU seconds, ...)

    def type_name(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return " or ".join({"str": "string", "int": "integer", "float": "number", "list": "list", "bool": "boolean", "dict": "table"}.get(k.__name__, k.__name__) for k in kinds)


def _positive(value) -> str:
    return "" if value > 0 else f"must be positive, got {value}"


def _not_negative(value) -> str:
    return "" if value >= 0 else f"must be 0 or more, got {value}"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    return lambda value: "" if value in choices else f"{value!r} is not one of {', '.join(choices)}"


def _fraction(value) -> str:
    return "" if 0 <= value <= 1 else f"must be between 0 and 1, got {value}"


def _moment(value) -> str:
    if not value:
        return ""
    try:
        import datetime

        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return ""
    except ValueError:
        return f"{value!r} is not a date and time: write it as 2026-12-01T23:59:00+00:00"


def _ids(value) -> str:
    return "" if value and all(isinstance(v, str) and v for v in value) else "must be a non-empty list of cell ids"


TABLES: dict[str, tuple[str, tuple[Key, ...]]] = {
    "assignment": ("What the assignment is, and which cells students answer.", (
        Key("name", str, REQUIRED, "Short name: the gradebook's key and the playground's file name."),
        Key("title", str, REQUIRED, "Title shown on every page."),
        Key("version", (str, int), REQUIRED, "Version of the assignment; results of another version are graded again."),
        Key("notebook", str, REQUIRED, "The source notebook (with solution markers), relative to the assignment folder."),
        Key("answer_cells", list, REQUIRED, "Ids of the cells students answer; every other code cell is locked.", _ids),
    )),
    "lab": ("What the lab is: what its answer defines, its classes, its base, what its cells read.", (
        Key("answer", str, "model", "The name the answer cells define, which the grader checks (a Keras model, or a tf.data dataset)."),
        Key("kind", str, "model", "What the answer is: model (a Keras model, trained by the grader) or dataset (a tf.data pipeline).",
            _one_of(("model", "dataset"))),
        Key("classes", list, [], "The class names, in the order of the labels' indices.",
            lambda v: "" if all(isinstance(c, str) for c in v) else "must be a list of names"),
        Key("validation_split", (int, float), 0.19, "The fraction of the data files (the first ones) that validates.", _fraction, unit="fraction"),
        Key("module", str, "", "A trusted Python module of the assignment's (e.g. lab.py): its demo data and weights, scenarios, checks."),
        Key("base", dict, {}, "The pretrained base, if any (see [lab.base])."),
        Key("environment", dict, {}, "Environment variables the locked cells read, as templates of {data_dir}, "
            "{image_size}, {batch_size}."),
        Key("hints", dict, {}, "Texts the feedback uses, in the lab's words, by name (freeze, add_base, pretrained_weights, "
            "input_shape, to_vector); a name the lab leaves out gets the grader's own words."),
    )),
    "data": ("The dataset the grader trains and validates on.", (
        Key("pattern", str, REQUIRED, '"demo" (the lab\'s own demo data, from its module) or a glob of the lab\'s data files.'),
        Key("image_size", int, REQUIRED, "Height and width of the images in pixels (a dataset lab's pictures may have any "
            "size: there it only fills {image_size}).", _positive, unit="pixels"),
        Key("format", str, "tfrecord", "How the data is stored: tfrecord (JPEG bytes and class index per record) or folders "
            "(JPEG files in one folder per class).", _one_of(("tfrecord", "folders"))),
        Key("image_feature", str, "image", "tfrecord: the feature holding the JPEG bytes."),
        Key("label_feature", str, "class", "tfrecord: the feature holding the class index."),
    )),
    "weights": ("The pretrained base's weights (for a lab with a base).", (
        Key("file", str, "demo", '"demo" (the lab\'s own, from its module) or the path of the Keras no-top weights file.'),
    )),
    "training": ("The grader's own training run.", (
        Key("epochs", int, REQUIRED, "Epochs of training.", _positive, unit="epochs"),
        Key("batch_size", int, REQUIRED, "Batch size per replica.", _positive, unit="images per replica"),
        Key("seed", int, 0, "Seed of every random draw of the training run."),
        Key("strategy", str, "auto", "auto (a TPU if one answers, else all GPUs, else the CPU), tpu, gpu or cpu.", _one_of(STRATEGIES)),
        Key("labels", str, "class_index", "The lab's labels: class_index (part 2) or one_hot (part 3).", _one_of(LABELS)),
        Key("fit_labels_to_loss", bool, False,
            "Forgive a loss that does not fit the lab's labels by feeding the labels it expects "
            "(the lab's own fit would fail; by default the compile check says so)."),
        Key("settled_margin", (int, float), 0.10,
            "Training stops once the validation accuracy has been this far above the accuracy check's threshold "
            "for 2 epochs in a row (the verdict is then settled; the scorecard says so); a negative value: never "
            "stop early.", unit="accuracy"),
    )),
    "sandbox": ("Limits of the sandboxed run of the student's cells.", (
        Key("cell_timeout", (int, float), 120.0, "CPU time one cell may use.", _positive, unit="CPU seconds"),
        Key("run_timeout", (int, float), 300.0, "CPU time the whole run may use.", _positive, unit="CPU seconds"),
        Key("memory_mb", int, 8192, "Memory of the run (its control group's limit).", _positive, unit="MiB"),
        Key("max_processes", int, 256, "Processes and threads the run may start.", _positive, unit="processes and threads"),
        Key("output_chars", int, 64 * 1024, "Characters of output kept per cell and stream (head and tail).", _positive, unit="characters"),
        Key("file_mb", int, 64, "Largest file the run may write (the model's weights among them).", _positive, unit="MiB"),
    )),
    "grader": ("Limits of the grader's own, trusted work on a submission.", (
        Key("memory_mb", int, 8192, "Memory of each grading worker (the trusted training runs there).", _positive, unit="MiB"),
        Key("attempts", int, 3, "Times a notebook is tried when the grader itself fails on it.", _positive, unit="tries"),
        Key("max_parameters", int, 0,
            "Largest model the grader rebuilds and trains, in parameters; 0: ten times the lab's solution.",
            lambda v: "" if v >= 0 else f"must be 0 or more, got {v}", unit="parameters"),
        # The budget of the grader's own work on one notebook (grader/grading/budget.py): over it, the notebook's verdict.
        Key("max_gflops", (int, float), 0.0,
            "Most GFLOPs per image of a model the grader trains (its layers' kernels, counted from its config); "
            "0: ten times the lab's solution.", _not_negative, unit="GFLOPs"),
        Key("max_activations", int, 0,
            "Most values a model's layers may output per image (what training holds in memory per image); "
            "0: ten times the lab's solution.", _not_negative, unit="values"),
        Key("work_cpu_seconds", (int, float), 900.0,
            "CPU seconds the grader's own work on one notebook may use (reading what the run left, rebuilding, "
            "training); 0: no limit.", _not_negative, unit="CPU seconds"),
        Key("work_memory_mb", int, 4096,
            "Memory the grader's own work on one notebook may add to its grading worker; 0: no limit.", _not_negative, unit="MiB"),
        Key("read_mb", int, 512,
            "Most bytes the arrays of a notebook's weights file may hold (as the grader holds them, unpacked).",
            _positive, unit="MiB"),
        Key("max_links", int, 20000,
            "Most links the grader follows in a notebook's weights file (Keras saves the lab's model with a few hundred).",
            _positive, unit="links"),
    )),
    "class": ("How a class's submissions become grades.", (
        Key("count", str, "latest", "Which of a student's submissions counts: latest or best.", _one_of(COUNTS)),
        Key("due", str, "", "Due date and time (ISO 8601, e.g. 2026-12-01T23:59:00+00:00); empty: no due date.", _moment),
        Key("late_penalty_per_day", (int, float), 0.0, "Fraction of the points taken per day (or part of one) late.", _fraction, unit="fraction of the points per day"),
        Key("late_cap", (int, float), 1.0, "Largest fraction of the points lateness can take.", _fraction, unit="fraction of the points"),
        Key("visibility", str, "visible",
            "When students see a check's result (on their scorecard, the workshop's pages, the feedback and "
            "Gradescope): visible, after_due_date (their own due date), after_published (`grader publish`) or "
            "hidden (never; it still counts).", _one_of(VISIBILITY)),
        Key("check_visibility", dict, {},
            "A check's own visibility, by check id (e.g. { accuracy = \"after_due_date\" }); the others take `visibility`."),
    )),
}
BASE_KEYS = (
    Key("application", str, REQUIRED, "The name of the keras.applications model."),
    Key("keras_file", str, REQUIRED, "The no-top weights file Keras fetches for it, with {size} for the input size."),
    Key("keras_sizes", list, [], "Input sizes that have a file of their own; any other uses the largest."),
)
CHECK_KEYS = (
    Key("id", str, REQUIRED, "Unique id of the check (a column of grades.csv)."),
    Key("check", str, REQUIRED, "The registered check to run (see the list of checks)."),
    Key("title", str, "", "What the scorecard calls it (default: the check's name)."),
    Key("points", (int, float), REQUIRED, "Points the check is worth.", lambda v: "" if v >= 0 else f"must be 0 or more, got {v}", unit="points"),
)


def _default(table: str, name: str) -> Any:
    """A key's default as declared above: the typed values below take theirs from there."""
    return next(key.default for key in TABLES[table][1] if key.name == name)


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    id: str
    check: str
    title: str
    points: float
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Limits:
    """The sandbox's limits ([sandbox]: the same names, units and defaults)."""

    cell_timeout: float = _default("sandbox", "cell_timeout")
    run_timeout: float = _default("sandbox", "run_timeout")
    memory_mb: int = _default("sandbox", "memory_mb")
    max_processes: int = _default("sandbox", "max_processes")
    output_chars: int = _default("sandbox", "output_chars")
    file_mb: int = _default("sandbox", "file_mb")


@dataclasses.dataclass(frozen=True)
class GraderLimits:
    """The grader's own limits ([grader])."""

    memory_mb: int = _default("grader", "memory_mb")
    attempts: int = _default("grader", "attempts")
    max_parameters: int = _default("grader", "max_parameters")
    max_gflops: float = _default("grader", "max_gflops")
    max_activations: int = _default("grader", "max_activations")
    work_cpu_seconds: float = _default("grader", "work_cpu_seconds")
    work_memory_mb: int = _default("grader", "work_memory_mb")
    read_mb: int = _default("grader", "read_mb")
    max_links: int = _default("grader", "max_links")


@dataclasses.dataclass(frozen=True)
class ClassRules:
    """How a class's submissions become grades ([class])."""

    count: str = _default("class", "count")
    due: float | None = None  # seconds since the epoch (the key's "": none)
    late_penalty_per_day: float = _default("class", "late_penalty_per_day")
    late_cap: float = _default("class", "late_cap")
    visibility: str = _default("class", "visibility")
    check_visibility: tuple[tuple[str, str], ...] = ()  # (check id, visibility) where a check has its own

    def __post_init__(self):
        # read back from JSON (the class's facts), the pairs are lists
        object.__setattr__(self, "check_visibility", tuple(tuple(pair) for pair in self.check_visibility))

    def visibility_of(self, check_id: str) -> str:
        return dict(self.check_visibility).get(check_id, self.visibility)


@dataclasses.dataclass(frozen=True)
class Lab:
    """What the lab is ([lab]): the core knows no lab but through this."""

    answer: str
    kind: str
    classes: tuple[str, ...]
    validation_split: float
    module: str  # the assignment's trusted module, relative to its folder
    base: Base | None
    environment: tuple[tuple[str, str], ...]
    hints: tuple[tuple[str, str], ...]

    def hint(self, name: str, default: str) -> str:
        return dict(self.hints).get(name, default)


@dataclasses.dataclass(frozen=True)
class Manifest:
    directory: str
    name: str
    title: str
    version: str
    notebook: str
    answer_cells: tuple[str, ...]
    data_pattern: str  # "demo" or a glob
    image_size: int
    weights_file: str  # "demo" or a path
    epochs: int
    batch_size: int
    seed: int
    strategy: str
    limits: Limits
    checks: tuple[CheckSpec, ...]
    labels: str
    fit_labels_to_loss: bool
    grader: GraderLimits
    rules: ClassRules
    lab: Lab
    data_format: str
    image_feature: str
    label_feature: str
    settled_margin: float = _default("training", "settled_margin")

    @property
    def notebook_path(self) -> str:
        return os.path.join(self.directory, self.notebook)

    @property
    def settled_above(self) -> float | None:
        """The validation accuracy above which the grader's training may stop (the accuracy
        check's threshold and the margin; None: no such check, or stopping early is off)."""
        threshold = next((float(spec.params["threshold"]) for spec in self.checks
                          if spec.check == "validation_accuracy" and "threshold" in spec.params), None)
        if threshold is None or self.settled_margin < 0 or threshold + self.settled_margin > 1:
            return None
        return round(threshold + self.settled_margin, 4)


def load(directory: str) -> Manifest:
    """Read and validate `directory/assignment.toml`."""
    path = os.path.join(directory, "assignment.toml")
    if not os.path.isfile(path):
        raise ManifestError(
            f"{directory} has no assignment.toml",
            hint="pass the folder of an assignment, e.g. assignments/keras_flowers_transfer",
        )
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{path}: not valid TOML: {error}") from None
    return parse(raw, directory=os.path.abspath(directory), path=path)


def parse(raw: dict, directory: str, path: str = "assignment.toml") -> Manifest:
    unknown = set(raw) - set(TABLES) - {"checks"}
    if unknown:
        name = sorted(unknown)[0]
        raise ManifestError.at(path, f"[{name}]", "unknown table", hint=_closest(name, [*TABLES, "checks"], "table"))
    values = {table: _table(raw, table, path) for table in TABLES}
    assignment, training, sandbox, grader = values["assignment"], values["training"], values["sandbox"], values["grader"]
    checks = _checks(raw.get("checks", []), path)
    manifest = Manifest(
        directory=directory,
        name=assignment["name"],
        title=assignment["title"],
        version=str(assignment["version"]),
        notebook=assignment["notebook"],
        answer_cells=tuple(assignment["answer_cells"]),
        data_pattern=values["data"]["pattern"],
        image_size=values["data"]["image_size"],
        weights_file=values["weights"]["file"],
        epochs=training["epochs"],
        batch_size=training["batch_size"],
        seed=training["seed"],
        strategy=training["strategy"],
        labels=training["labels"],
        fit_labels_to_loss=training["fit_labels_to_loss"],
        settled_margin=float(training["settled_margin"]),
        limits=Limits(**{**sandbox, "cell_timeout": float(sandbox["cell_timeout"]), "run_timeout": float(sandbox["run_timeout"])}),
        grader=GraderLimits(**grader),
        rules=_rules(values["class"], checks, path),
        lab=_lab(values["lab"], path),
        data_format=values["data"]["format"],
        image_feature=values["data"]["image_feature"],
        label_feature=values["data"]["label_feature"],
        checks=checks,
    )
    ids = [check.id for check in manifest.checks]
    if len(set(ids)) != len(ids):
        raise ManifestError.at(path, "[[checks]]", f"check ids must be unique, got {ids}")
    return manifest


def _lab(values: dict[str, Any], path: str) -> Lab:
    base = None
    if values["base"]:
        found = _values(values["base"], BASE_KEYS, path, "[lab.base]")
        base = Base(found["application"], found["keras_file"], tuple(found["keras_sizes"]))
    for table in ("environment", "hints"):
        for key, value in values[table].items():
            if not isinstance(value, str):
                raise ManifestError.at(path, f"[lab.{table}] {key}", f"must be a string, got {value!r}")
    return Lab(values["answer"], values["kind"], tuple(values["classes"]), float(values["validation_split"]), values["module"],
               base, tuple(sorted(values["environment"].items())), tuple(sorted(values["hints"].items())))


def _rules(values: dict[str, Any], checks: tuple[CheckSpec, ...], path: str) -> ClassRules:
    import datetime

    due = None
    if values["due"]:
        moment = datetime.datetime.fromisoformat(values["due"].replace("Z", "+00:00"))
        due = (moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)).timestamp()
    ids = [spec.id for spec in checks]
    own = values["check_visibility"]
    for check_id, setting in own.items():
        if check_id not in ids:
            raise ManifestError.at(path, f"[class] check_visibility {check_id}", "no such check", hint=_closest(check_id, ids, "check id"))
        if setting not in VISIBILITY:
            raise ManifestError.at(path, f"[class] check_visibility {check_id}", _one_of(VISIBILITY)(setting))
    settings = [values["visibility"], *own.values()]
    if "after_due_date" in settings and due is None:
        raise ManifestError.at(path, "[class] due", "missing: a check is shown after_due_date, and the class has no due date",
                               hint="set due, or choose another visibility")
    return ClassRules(values["count"], due, float(values["late_penalty_per_day"]), float(values["late_cap"]), values["visibility"],
                      tuple(sorted(own.items())))


def _table(raw: dict, table: str, path: str) -> dict[str, Any]:
    keys = TABLES[table][1]
    value = raw.get(table)
    if value is None:
        if any(key.default is REQUIRED for key in keys):
            raise ManifestError.at(path, f"[{table}]", "missing table")
        value = {}
    if not isinstance(value, dict):
        raise ManifestError.at(path, f"[{table}]", "must be a table")
    return _values(value, keys, path, f"[{table}]")


def _values(value: dict, keys: tuple[Key, ...], path: str, where: str, extra_ok: bool = False) -> dict[str, Any]:
    names = [key.name for key in keys]
    if not extra_ok:
        for name in value:
            if name not in names:
                raise ManifestError.at(path, f"{where} {name}", "unknown key", hint=_closest(name, names, "key"))
    found = {}
    for key in keys:
        item = value.get(key.name, key.default)
        if item is REQUIRED:
            raise ManifestError.at(path, f"{where} {key.name}", "missing", hint=key.help)
        kinds = key.kind if isinstance(key.kind, tuple) else (key.kind,)
        if (isinstance(item, bool) and bool not in kinds) or not isinstance(item, kinds):
            raise ManifestError.at(path, f"{where} {key.name}", f"must be {key.type_name()}, got {item!r}")
        problem = key.valid(item) if key.valid else ""
        if problem:
            raise ManifestError.at(path, f"{where} {key.name}", problem)
        found[key.name] = item
    return found


def _closest(name: str, choices, what: str) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    known = f"valid {what}s: {', '.join(choices)}"
    return f"did you mean {close[0]!r}? {known}" if close else known


def _checks(entries: Any, path: str) -> tuple[CheckSpec, ...]:
    if not isinstance(entries, list) or not entries:
        raise ManifestError.at(path, "[[checks]]", "no checks declared", hint="add at least one [[checks]] table")
    specs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ManifestError.at(path, f"checks[{index}]", "must be a table")
        found = _values(entry, CHECK_KEYS, path, f"checks[{index}]", extra_ok=True)
        params = {key: value for key, value in entry.items() if key not in {k.name for k in CHECK_KEYS}}
        specs.append(CheckSpec(found["id"], found["check"], found["title"] or found["check"], float(found["points"]), params))
    return tuple(specs)


def reference() -> str:
    """The manifest's reference in Markdown, made from the declarations above."""
    lines = ["# `assignment.toml` reference", "", "Generated by `python -m grader.config.manifest` from the declarations in",
             "`grader/config/manifest.py`; an unknown table or key is an error.", ""]
    tables = [(f"[{name}]", entry) for name, entry in TABLES.items()]
    tables.insert(2, ("[lab.base]", ("The lab's pretrained base, if it has one.", BASE_KEYS)))
    tables.append(("[[checks]]", ("One table per check; its other keys are the check's parameters (see the checks).", CHECK_KEYS)))
    for heading, (about, keys) in tables:
        lines += [f"## {heading}", "", about, "", "| key | type | default | unit | meaning |", "| --- | --- | --- | --- | --- |"]
        for key in keys:
            default = "required" if key.default is REQUIRED else f"`{key.default!r}`".replace("'", '"')
            lines.append(f"| `{key.name}` | {key.type_name()} | {default} | {key.unit} | {key.help} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
