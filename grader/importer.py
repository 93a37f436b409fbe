"""`grader new`: an assignment from a codelab's pair of notebooks (playground and solution).

The pair is aligned cell by cell (by id, then by position). A code cell whose solution
differs from its playground version under a `[WORK REQUIRED]` / `[WORK WAS REQUIRED HERE]`
heading is an answer: its lines that the solution adds or changes are marked
`### BEGIN SOLUTION` ... `### END SOLUTION`, with the playground's placeholder comment as
the placeholder, so that `release` gives back the playground. Every other cell is taken
from the solution. The manifest is a skeleton with what can be read off the notebooks
(the answer's name, the classes, the base, the variables the locked cells read, the
checks the solution's code calls for); what cannot be decided is said, for the
instructor to fill in.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import json
import os
import re

import nbformat

from grader import cells
from grader.faults import GraderError
from labs import NOTEBOOK_NAMES  # what the series' notebooks call the values read off them
from grader.notebook import Unreadable, read_submission
from grader.storage import write_atomic

PLACEHOLDER = re.compile(r"^\s*#\s*YOUR [A-Z ]*HERE\b.*$")  # "# YOUR CODE HERE", or with a hint after it
LAYER = re.compile(r"layers\.(?P<kind>[A-Z][A-Za-z0-9]*)\((?P<args>[^()]*(?:\([^()]*\)[^()]*)*)\)")
APPLICATION = re.compile(r"applications\.(?P<name>[A-Z][A-Za-z0-9]*)\(")
ENVIRONMENT = re.compile(r"os\.environ\.get\(\s*['\"](?P<name>[A-Z0-9_]+)['\"]\s*,\s*['\"](?P<default>[^'\"]*)['\"]")


@dataclasses.dataclass
class Imported:
    folder: str
    answers: list[str]
    decided: list[str]  # what was read off the notebooks
    undecided: list[str]  # what the instructor must fill in

    def lines(self) -> list[str]:
        said = [f"wrote {self.folder}: answer cells {', '.join(self.answers)}"]
        said += [f"  read: {line}" for line in self.decided]
        said += [f"  to do: {line}" for line in self.undecided]
        return said


def new(folder: str, playground_path: str, solution_path: str, *, data: str | None = None, weights: str | None = None,
        image_size: int | None = None, threshold: float = 0.5) -> Imported:
    """Write the assignment folder; returns what was decided and what was not."""
    if os.path.exists(os.path.join(folder, "assignment.toml")):
        raise GraderError(f"{folder} already holds an assignment", hint="choose a new folder")
    playground, solution = _read(playground_path), _read(solution_path)
    pairs = align(playground.cells, solution.cells)
    source = copy.deepcopy(solution)
    source.cells, answers, notes = [], [], []
    used: set[str] = set()
    for index, (given, solved) in enumerate(pairs):
        cell = copy.deepcopy(solved if solved is not None else given)
        key = _unique(cells.cell_key(cell) or f"cell-{index}", used)
        cell["id"] = key
        if given is not None and solved is not None and cells.is_code(solved) and _differs(given, solved):
            if _under_work_heading(pairs, index):
                cell["source"] = marked(cells.source_of(given), cells.source_of(solved))
                answers.append(key)
            else:
                notes.append(f"cell {key} differs between the notebooks but has no [WORK REQUIRED] heading: the solution's version is locked")
        if cells.is_code(cell):
            cell["outputs"], cell["execution_count"] = [], None
        source.cells.append(cell)
    if not answers:
        raise GraderError("no answer cells: no code cell differs under a [WORK REQUIRED] heading",
                          hint="check that the playground and solution are the same lab's pair")
    source.nbformat, source.nbformat_minor = 4, 5
    os.makedirs(folder, exist_ok=True)
    write_atomic(os.path.join(folder, "source.ipynb"), nbformat.writes(source))
    manifest, decided, undecided = skeleton(os.path.basename(os.path.abspath(folder)), source, answers, data, weights, image_size, threshold)
    write_atomic(os.path.join(folder, "assignment.toml"), manifest)
    return Imported(folder, answers, decided, notes + undecided)


def _read(path: str):
    try:
        return read_submission(path)
    except (Unreadable, OSError) as error:
        raise GraderError(f"cannot read {path}: {error}") from None


def align(given: list, solved: list) -> list[tuple]:
    """(playground cell, solution cell) pairs in the solution's order: by id, then by position."""
    by_key = {cells.cell_key(c): c for c in given if cells.cell_key(c)}
    taken = {id(by_key[cells.cell_key(c)]) for c in solved if cells.cell_key(c) in by_key}
    rest = [c for c in given if id(c) not in taken]
    pairs = []
    for cell in solved:
        match = by_key.get(cells.cell_key(cell))
        if match is None and rest and rest[0].get("cell_type") == cell.get("cell_type"):
            match = rest.pop(0)
        pairs.append((match, cell))
    return pairs


def _differs(given, solved) -> bool:
    return cells.checksum(cells.source_of(given)) != cells.checksum(cells.source_of(solved))


def _under_work_heading(pairs, index: int) -> bool:
    for given, solved in reversed(pairs[:index]):
        for cell in (given, solved):
            if cell is not None and cells.is_work_heading(cell):
                return True
        if (solved is not None and cells.is_heading(solved)) or (given is not None and cells.is_code(given)):
            return False
    return False


def marked(given: str, solved: str) -> str:
    """The solution's source with what it adds to the playground's marked as solution, the
    playground's placeholder comment (if any) as each block's placeholder."""
    old, new = given.splitlines(), solved.splitlines()
    out: list[str] = []
    for tag, a1, a2, b1, b2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            out += new[b1:b2]
            continue
        if tag == "delete":
            continue
        placeholder = next((line.strip() for line in old[a1:a2] if PLACEHOLDER.match(line)), "")
        indent = re.match(r"\s*", new[b1]).group(0)
        out.append(f"{indent}### BEGIN SOLUTION" + (f"  {placeholder}" if placeholder else ""))
        out += new[b1:b2]
        out.append(f"{indent}### END SOLUTION")
    return "\n".join(out)


def _unique(key: str, used: set[str]) -> str:
    unique, n = key, 2
    while unique in used:
        unique, n = f"{key}-{n}", n + 1
    used.add(unique)
    return unique


def skeleton(name: str, source, answers: list[str], data, weights, image_size, threshold) -> tuple[str, list[str], list[str]]:
    """The manifest's text, what was read off the notebook, and what is left to decide."""
    from labs import keras_applications

    code = {cells.cell_key(c): cells.source_of(c) for c in source.cells if cells.is_code(c)}
    answer_code = "\n".join(cells.solution_code(code[key]) for key in answers)
    locked_code = "\n".join(text for key, text in code.items() if key not in answers)
    decided, undecided = [], []
    title = next((cells.source_of(c).lstrip("# ").splitlines()[0] for c in source.cells if cells.is_heading(c)), name)
    answer = "model" if any(cells.assigns_name(cells.solution_code(code[k]), "model") for k in answers) else ""
    kind = "model"
    if not answer and any(cells.assigns_name(cells.solution_code(code[k]), "dataset") for k in answers):
        answer, kind = "dataset", "dataset"
    if not answer:
        answer = "model"
        undecided.append("[lab] answer: no answer cell assigns `model` or `dataset`; name what the answer defines")
    decided.append(f"the answer defines `{answer}` ({kind})")
    classes = _classes(locked_code + "\n" + answer_code)
    (decided if classes else undecided).append(f"[lab] classes: {classes}" if classes else f"[lab] classes: no {NOTEBOOK_NAMES['classes']} = [...] found")
    lines = [f"# Made by `grader new` from {len(source.cells)} cells; read the `to do` it printed.", "",
             "[assignment]", f'name = "{name}"', f"title = {json.dumps(title)}", 'version = "1"', 'notebook = "source.ipynb"',
             f"answer_cells = {json.dumps(answers)}", "", "[lab]", f'answer = "{answer}"', f'kind = "{kind}"',
             f"classes = {json.dumps(classes)}", ""]
    base = APPLICATION.search(answer_code + "\n" + locked_code)
    known = keras_applications.FILES.get(base.group("name")) if base else None
    if base:
        decided.append(f"the pretrained base is {base.group('name')}")
        lines += ["[lab.base]", f'application = "{base.group("name")}"']
        if known:
            lines += [f'keras_file = "{known[0]}"', f"keras_sizes = {json.dumps(list(known[1]))}", ""]
        else:
            lines += ['keras_file = ""  # to do: the no-top weights file Keras fetches, with {size}', ""]
            undecided.append(f"[lab.base] keras_file: the file Keras downloads for {base.group('name')} is not known to the grader")
    environment = _environment(locked_code)
    if environment:
        lines += ["[lab.environment]", *(f"{key} = {json.dumps(value)}" for key, value in environment), ""]
        decided.append(f"the locked cells read {', '.join(key for key, _ in environment)}")
    if "gs://" in locked_code and not environment:
        undecided.append("a locked cell reads gs://: make it read an environment variable (see docs/authoring.md)")
    size = image_size or _image_size(locked_code)
    data_format = "folders" if re.search(r"\*/\*\.jp", locked_code) else "tfrecord"
    lines += ["[data]", f'pattern = {json.dumps(data or "demo")}', f"image_size = {size}", f'format = "{data_format}"', ""]
    if data is None:
        undecided.append('[data] pattern: "demo" needs a lab module (see docs/authoring.md); or give the data\'s glob')
    if base:
        lines += ["[weights]", f'file = {json.dumps(weights or "demo")}', ""]
        if weights is None:
            undecided.append('[weights] file: "demo" needs a lab module; or give the weights file')
    one_hot = "categorical_crossentropy" in answer_code and "sparse_categorical_crossentropy" not in answer_code
    lines += ["[training]", "epochs = 6", "batch_size = 32", "seed = 42", f'labels = "{"one_hot" if one_hot else "class_index"}"', ""]
    if kind == "model":
        undecided.append("[training] epochs and batch_size: set what the grader trains with")
    lines += _checks(answer_code, locked_code, base.group("name") if base else "", kind, threshold, undecided)
    return "\n".join(lines) + "\n", decided, undecided


def _classes(code: str) -> list[str]:
    found = re.search(rf"^{NOTEBOOK_NAMES['classes']}\s*=\s*(\[.*?\])", code, re.MULTILINE | re.DOTALL)
    if not found:
        return []
    try:
        value = ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value]


def _environment(code: str) -> list[tuple[str, str]]:
    """The variables the locked cells read, with a guess of what the sandbox should say."""
    found = []
    for match in ENVIRONMENT.finditer(code):
        name, default = match.group("name"), match.group("default")
        if NOTEBOOK_NAMES["image_size"] in name:
            value = "{image_size}"
        elif NOTEBOOK_NAMES["batch_size"] in name:
            value = "{batch_size}"
        elif "*" in default or "/" in default:
            value = "{data_dir}/" + "/".join(part for part in default.split("/")[-2:] if "*" in part) if "*" in default else "{data_dir}"
        else:
            continue
        found.append((name, value))
    return list(dict.fromkeys(found))


def _image_size(code: str) -> int:
    name = NOTEBOOK_NAMES["image_size"]
    found = re.search(rf"{name}['\"]\s*,\s*['\"](\d+)['\"]", code) or re.search(rf"{name}\s*=\s*\[(\d+)", code)
    return int(found.group(1)) if found else 192


def _checks(answer_code: str, locked_code: str, base: str, kind: str, threshold: float, undecided: list[str]) -> list[str]:
    """The checks the solution's code calls for, with the lab's usual points."""
    tables = [("runs", "answer_cells_run", "The answer cells run", 10, [])]
    if kind == "model":
        rule = _rule(answer_code, base)
        if rule:
            tables.append(("structure", "model_structure", "The model's layers", 30, [f"layers = {json.dumps(rule)}"]))
            undecided.append("[[checks]] structure: the rule is the solution's layers, widened as the series allows; "
                             "read it against the lab's text (the rule language: docs/authoring.md)")
        if base and "trainable = False" in answer_code + locked_code:
            tables.append(("frozen", "frozen_base", "The pretrained base is frozen", 20, []))
        if ".compile(" in answer_code:
            tables.append(("compile", "compile_settings", "Compiled with a loss that fits the labels and the accuracy metric", 10, []))
        tables.append(("accuracy", "validation_accuracy", "Validation accuracy after training in the grader", 30, [f"threshold = {threshold}"]))
        undecided.append(f"[[checks]] accuracy: threshold {threshold} is a guess; calibrate it on your data (docs/authoring.md)")
    else:
        labels = "one_hot" if "one_hot(" in answer_code else "name"
        tables += [("elements", "dataset_elements", "Each element is a (picture, label) pair", 30, [f'labels = "{labels}"']),
                   ("pictures", "dataset_pictures", "The pictures are the data's files, decoded as they are", 30, []),
                   ("labels", "dataset_labels", "Each picture is labelled with its class", 30, [])]
        undecided.append(f'[[checks]] elements: labels = "{labels}" is read off the solution; say "index" if the lab '
                         "asks for class indices (docs/authoring.md)")
    lines = []
    for check_id, check, title, points, params in tables:
        lines += ["[[checks]]", f'id = "{check_id}"', f'check = "{check}"', f"title = {json.dumps(title)}", f"points = {points}", *params, ""]
    return lines


def _rule(code: str, base: str) -> list[str]:
    """A structure rule from the solution's layers, widened as the series allows: any
    preprocessing first; with a pretrained base, Flatten or global pooling alike; a stack
    of convolutions as a first and a last convolution with any convolutions, pooling,
    normalisation and dropout between, and pooling, normalisation or dropout after; hidden
    relu layers before the output."""
    layers = _solution_layers(code)
    if not layers and not base:
        return []
    rule = ["preprocessing*"]
    if base:
        rule.append(f"pretrained {base}(include_top=False)")
    convolutions = [n for n, (kind, _) in enumerate(layers) if kind in CONVOLUTIONS]
    stack_end = convolutions[-1] if len(convolutions) > 1 else -1
    while 0 <= stack_end < len(layers) - 1 and layers[stack_end + 1][0] in BETWEEN:
        stack_end += 1
    for position, (kind, args) in enumerate(layers):
        last = position == len(layers) - 1
        if len(convolutions) > 1 and convolutions[0] < position <= stack_end:
            if position == convolutions[-1]:
                between = {_step(k, a) for k, a in layers[convolutions[0]: position]} | {_step(k, "") for k in BETWEEN}
                rule += [f"({' | '.join(sorted(between))})*", _step(kind, args)]
            if position == stack_end and stack_end > convolutions[-1]:
                rule.append(f"({' | '.join(sorted({_step(k, '') for k in BETWEEN}))})*")
            continue  # within the stack: the steps above cover it
        if kind in ("Flatten", "GlobalAveragePooling2D"):
            rule.append("Flatten | GlobalAveragePooling2D" if base else kind)
        elif kind == "Dense" and last:
            units = re.match(r"\s*(\d+)", args)
            rule.append("(Dense(relu) | dropout)*")
            rule.append("Dense(" + ", ".join(filter(None, [units.group(1) if units else "", _activation(args)])) + ")")
        elif kind in ("Dropout",):
            rule.append("dropout?")
        else:
            rule.append(_step(kind, args))
    return rule


def _solution_layers(code: str) -> list[tuple[str, str]]:
    """The solution's layers as (kind, arguments), as the grader reads a model: no Input,
    and an Activation folded into the layer before it."""
    layers: list[tuple[str, str]] = []
    for match in LAYER.finditer(code):
        kind, args = match.group("kind"), match.group("args")
        if kind in ("Input", "InputLayer"):
            continue
        if kind == "Activation" and layers and not _activation(layers[-1][1]):
            name = re.match(r"\s*['\"](\w+)['\"]", args)
            if name:
                layers[-1] = (layers[-1][0], f"{layers[-1][1]}, activation='{name.group(1)}'")
                continue
        layers.append((kind, args))
    return layers


BETWEEN = ("MaxPooling2D", "AveragePooling2D", "BatchNormalization", "Dropout", "SpatialDropout2D")
CONVOLUTIONS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")


def _activation(args: str) -> str:
    found = re.search(r"activation\s*=\s*['\"](\w+)['\"]", args)
    return found.group(1) if found else ""


def _step(kind: str, args: str) -> str:
    """A layer of the solution as a rule's step: its kind, and its activation if it has one."""
    if kind in ("Dropout", "SpatialDropout2D", "GaussianNoise"):
        return "dropout"
    activation = _activation(args) if kind in (*CONVOLUTIONS, "Dense") else ""
    return f"{kind}({activation})" if activation else kind
