"""`grader new`: an assignment from a codelab's pair of notebooks (playground and solution).

The pair is aligned cell by cell (by id, then by position). A code cell whose code
differs from its playground version (whitespace and comments aside) under a
`[WORK REQUIRED]` / `[WORK WAS REQUIRED HERE]` heading is an answer: what the solution
changes is marked `### BEGIN SOLUTION` ... `### END SOLUTION`, and what the playground
shows there instead is kept in a `### BEGIN GIVEN` ... `### END GIVEN` block (or, for a
single placeholder comment, as the solution block's placeholder), so that `release`
gives back the playground's cell. Every other cell is the playground's (what students
see), its code the same as the solution's. Each cell gets a readable id, its heading's,
and keeps the codelab's ids as aliases; an answer keeps the code checksum of the
playground's version, so that the codelab's playground left as given is graded 0.

The manifest is a skeleton with what can be read off the notebooks (title, answer,
classes, base, the variables the locked cells should read, the checks the solution's
code calls for, their points summing to 100); what cannot be decided is said, for the
instructor to do: each locked cell that would not run in the grader's sandbox (see
grader/config/portable.py), and the accuracy threshold, which `grader check` suggests once the
lab runs.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import json
import math
import os
import re

import nbformat

from grader.config import cells, portable
from grader.faults import GraderError
from labs import NOTEBOOK_NAMES  # what the series' notebooks call the values read off them
from grader.config.notebook import Unreadable, read_submission
from grader.config.release import ALIASES, UNTOUCHED
from grader.store.storage import write_atomic

PLACEHOLDER = re.compile(r"^\s*#\s*YOUR [A-Z ]*HERE\b.*$")  # "# YOUR CODE HERE", or with a hint after it
LAYER = re.compile(r"layers\.(?P<kind>[A-Z][A-Za-z0-9]*)\((?P<args>[^()]*(?:\([^()]*\)[^()]*)*)\)")
APPLICATION = re.compile(r"applications\.(?P<name>[A-Z][A-Za-z0-9]*)\(")
ENVIRONMENT = re.compile(r"os\.environ\.get\(\s*['\"](?P<name>[A-Z0-9_]+)['\"]\s*,\s*['\"](?P<default>[^'\"]*)['\"]")
COLAB_METADATA = ("id", "outputId", "executionInfo", "colab")  # Colab's, of one run: the id moves to `id` and the aliases


@dataclasses.dataclass
class Imported:
    folder: str
    answers: list[str]
    decided: list[str]  # what was read off the notebooks
    undecided: list[str]  # what the instructor must do

    def lines(self) -> list[str]:
        said = [f"wrote {self.folder}: answer cells {', '.join(self.answers)}"]
        said += [f"  read: {line}" for line in self.decided]
        said += [f"  to do: {line}" for line in self.undecided]
        return said


def new(folder: str, playground_path: str, solution_path: str, *, data: str | None = None, weights: str | None = None,
        image_size: int | None = None, threshold: float | None = None) -> Imported:
    """Write the assignment folder; returns what was decided and what was not."""
    if os.path.exists(os.path.join(folder, "assignment.toml")):
        raise GraderError(f"{folder} already holds an assignment", hint="choose a new folder")
    playground, solution = _read(playground_path), _read(solution_path)
    pairs = align(playground.cells, solution.cells)
    source, answers, said = _source(solution, pairs)
    notes = []
    left_out = len(playground.cells) - sum(given is not None for given, _ in pairs)
    if left_out:
        notes.append(f"{left_out} cell(s) of the playground have no counterpart in the solution and were left out; "
                     "add them to source.ipynb if students need them")
    os.makedirs(folder, exist_ok=True)
    write_atomic(os.path.join(folder, "source.ipynb"), nbformat.writes(source))
    title = lab_title(playground, solution, playground_path)
    manifest, decided, undecided = skeleton(os.path.basename(os.path.abspath(folder)), title, source, answers, _located(data),
                                            _located(weights), image_size, threshold)
    write_atomic(os.path.join(folder, "assignment.toml"), manifest)
    return Imported(folder, answers, said + decided, notes + undecided)


def _read(path: str):
    try:
        return read_submission(path)
    except (Unreadable, OSError) as error:
        raise GraderError(f"cannot read {path}: {error}") from None


def _located(path: str | None) -> str | None:
    """A path given on the command line, as the manifest must say it (relative to the
    assignment's folder): absolute; "demo" as it is."""
    return path if path in (None, "demo") else os.path.abspath(path)


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


def _source(solution, pairs: list[tuple]) -> tuple:
    """The source notebook (nbformat 4.5), its answer cells' keys, and what to tell the instructor."""
    source = copy.deepcopy(solution)
    source.cells, answers, notes = [], [], []
    for index, ((given, solved), key) in enumerate(zip(pairs, cell_keys(pairs))):
        cell = copy.deepcopy(solved)
        metadata = cell.setdefault("metadata", {})
        for name in COLAB_METADATA:
            metadata.pop(name, None)
        cell["id"] = key
        if given is not None and cells.is_code(solved) and _differs(given, solved) and _under_work_heading(pairs, index):
            cell["source"] = marked(cells.source_of(given), cells.source_of(solved))
            metadata.setdefault("grader", {})[UNTOUCHED] = [cells.code_checksum(cells.source_of(given))]
            answers.append(key)
        elif given is not None:
            if cells.is_code(solved) and _differs(given, solved):
                notes.append(f"cell `{key}` differs between the notebooks outside a [WORK REQUIRED] section ("
                             f"{_first_change(cells.source_of(given), cells.source_of(solved))}): the playground's version "
                             "is locked, as students have it")
            cell["source"] = cells.source_of(given)  # the instructions students see (the solution's headings often lack them)
        if cells.is_code(cell):
            aliases = [k for k in dict.fromkeys(cells.cell_key(c) for c in (solved, given) if c is not None) if k and k != key]
            if aliases:
                metadata.setdefault("grader", {})[ALIASES] = aliases
            cell["outputs"], cell["execution_count"] = [], None
        source.cells.append(nbformat.from_dict(cell))
    if not answers:
        raise GraderError("no answer cells: no code cell differs under a [WORK REQUIRED] heading",
                          hint="check that the playground and solution are the same lab's pair")
    source.nbformat, source.nbformat_minor = 4, 5
    return source, answers, notes


def _first_change(given: str, solved: str) -> str:
    """The first code line the solution has and the playground has not, or the reverse."""
    old, new = (cells.code_lines(text) for text in (given, solved))
    added = [line.strip() for line in new if _squeezed(line) not in map(_squeezed, old)]
    if added:
        return f"the solution has `{added[0]}`"
    return "the playground has `" + next(line.strip() for line in old if _squeezed(line) not in map(_squeezed, new)) + "`"


def cell_keys(pairs: list[tuple]) -> list[str]:
    """A readable id for each cell, from its heading: `model`, `configuration`,
    `configuration-2`, `model-heading`; a code cell with a Colab form title (`#@title
    display utilities [RUN ME]`) is named by it."""
    used: set[str] = set()
    keys, topic = [], ""
    for _, cell in pairs:
        text = cells.source_of(cell)
        if cells.is_heading(cell):
            topic = _slug(text.lstrip().splitlines()[0].lstrip("#"))
            name = f"{topic}-heading" if topic else "heading"
        elif cells.is_code(cell):
            form = re.match(r"\s*#@title\s+(.*)", text)
            name = (_slug(form.group(1)) if form else "") or topic or "cell"
        else:
            name = f"{topic}-text" if topic else "text"
        keys.append(_unique(name, used))
    return keys


def _slug(text: str, words: int = 4) -> str:
    """`Read images and labels [WORK REQUIRED]` -> `read-images-and-labels`."""
    text = re.sub(r"\[[^\]]*\]", " ", text)
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words])


def _unique(key: str, used: set[str]) -> str:
    unique, n = key, 2
    while unique in used:
        unique, n = f"{key}-{n}", n + 1
    used.add(unique)
    return unique


def lab_title(playground, solution, path: str) -> str:
    """The lab's title: its first level-1 heading, else Colab's name for the notebook, else
    the file's name, without what tells the playground from the solution."""
    for notebook in (playground, solution):
        for cell in notebook.cells:
            first = cells.source_of(cell).lstrip().split("\n", 1)[0]
            if cells.is_heading(cell) and re.match(r"#\s", first) and not cells.is_work_heading(cell):
                return first.lstrip("# ").strip()
    name = ((playground.metadata.get("colab") or {}).get("name") or "") if isinstance(playground.metadata, dict) else ""
    name = name or os.path.basename(path).split("@")[0]
    name = re.sub(r"\.ipynb$", "", name)
    name = re.sub(r"[\s_]*\(?(playground|solution)\)?\s*$", "", name, flags=re.IGNORECASE)
    return re.sub(r"^\d+[\s_]*", "", name).replace("_", " ").strip() or "Imported lab"


def _differs(given, solved) -> bool:
    """Does the solution's code differ from the playground's, whitespace and comments aside?"""
    return [_squeezed(line) for line in cells.code_lines(cells.source_of(given))] != \
        [_squeezed(line) for line in cells.code_lines(cells.source_of(solved))]


def _squeezed(line: str) -> str:
    """A line with the whitespace that means nothing left out: its indentation kept, the
    spaces between tokens dropped (`loss= 'x'` is `loss='x'`), strings as they are."""
    indent = re.match(r"[ \t]*", line).group(0)
    kept, quote, escaped = [], "", False
    for char in line[len(indent):]:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char.isspace():
            continue
        kept.append(char)
    return indent + "".join(kept)


def _under_work_heading(pairs, index: int) -> bool:
    for given, solved in reversed(pairs[:index]):
        for cell in (given, solved):
            if cell is not None and cells.is_work_heading(cell):
                return True
        if (solved is not None and cells.is_heading(solved)) or (given is not None and cells.is_code(given)):
            return False
    return False


def marked(given: str, solved: str) -> str:
    """The solution's source with what it changes marked as solution, and what the
    playground shows there instead kept as given (a single placeholder comment as the
    solution block's placeholder), so that `cells.strip_solutions` gives back the
    playground. Lines that differ in whitespace only are the same line (the playground's)."""
    old, new = given.splitlines(), solved.splitlines()
    matcher = difflib.SequenceMatcher(a=[_squeezed(line) for line in old], b=[_squeezed(line) for line in new], autojunk=False)
    out: list[str] = []
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        shown, solving = old[a1:a2], new[b1:b2]
        if tag == "equal" or not any(line.strip() for line in shown + solving):
            out += shown  # the same code (or blank lines only): the playground's words
            continue
        filled = [line for line in solving if line.strip()]
        indent = re.match(r"[ \t]*", (filled or shown)[0]).group(0)
        if not filled:  # the solution only takes lines away: the playground shows them
            out += cells.given_block(shown)
            continue
        if len(shown) == 1 and PLACEHOLDER.match(shown[0]) and shown[0] == indent + shown[0].strip():
            out.append(f"{indent}### BEGIN SOLUTION  {shown[0].strip()}")
        else:
            out += cells.given_block(shown, indent)
            out.append(f"{indent}### BEGIN SOLUTION")
        out += solving
        out.append(f"{indent}### END SOLUTION")
    return "\n".join(out)


def skeleton(name: str, title: str, source, answers: list[str], data, weights, image_size, threshold) -> tuple[str, list[str], list[str]]:
    """The manifest's text, what was read off the notebook, and what is left to do."""
    from labs import keras_applications

    code = {cells.cell_key(c): cells.source_of(c) for c in source.cells if cells.is_code(c)}
    answer_code = "\n".join(cells.solution_code(code[key]) for key in answers)
    locked_code = "\n".join(text for key, text in code.items() if key not in answers)
    decided, undecided = [f"the title is {title!r}"], []
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
    size = image_size or _image_size(locked_code)
    found = portable.problems(_run_cells(source, answers), size)
    environment = list(dict.fromkeys(_environment(locked_code) + [(p.variable, p.value) for p in found if p.variable]))
    if environment:
        lines += ["[lab.environment]", *(f"{key} = {json.dumps(value)}" for key, value in environment), ""]
        decided.append(f"the locked cells read {', '.join(key for key, _ in environment)} in the grader's sandbox"
                       + (" (once the cells below are changed to read them)" if any(p.variable for p in found) else ""))
    decided += [p.said for p in found if not p.to_do]
    undecided += [p.said for p in found if p.to_do]
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
    lines += _checks(answer_code, locked_code, base.group("name") if base else "", kind, len(classes) or 2, threshold, undecided)
    return "\n".join(lines) + "\n", decided, undecided


def _run_cells(source, answers: list[str]) -> list[portable.Cell]:
    """The code cells the grader runs, up to the last answer, with the heading each is under."""
    found, heading = [], ""
    for cell in source.cells:
        if cells.is_heading(cell):
            heading = cells.source_of(cell).strip().splitlines()[0]
        elif cells.is_code(cell):
            key = cells.cell_key(cell)
            text = cells.solution_code(cells.source_of(cell)) if key in answers else cells.source_of(cell)
            found.append(portable.Cell(key, heading, text, key in answers))
            if key == answers[-1]:
                break
    return found


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


def _checks(answer_code: str, locked_code: str, base: str, kind: str, classes: int, threshold: float | None,
            undecided: list[str]) -> list[str]:
    """The checks the solution's code calls for, with the lab's usual points (the accuracy
    check takes what the others leave of 100)."""
    tables = [("runs", "answer_cells_run", "The answer cells run", 10, [])]
    if kind == "model":
        rule = _rule(answer_code, base)
        if rule:
            tables.append(("structure", "model_structure", "The model's layers", 30, [f"layers = {json.dumps(rule)}"]))
            undecided.append("[[checks]] structure: the rule is the solution's layers, widened as the series allows; "
                             "read it against the lab's text (the rule language: docs/authoring.md)")
        if base and "trainable = False" in answer_code + locked_code:
            tables.append(("frozen", "frozen_base", "The pretrained base is frozen", 20, []))
        scoped = re.search(r"with\s+(\w+)\.scope\(\)", answer_code)
        if scoped:  # the lab asks for the model to be made and compiled on its distribution strategy
            tables.append(("scope", "strategy_scope", "Built and compiled inside strategy.scope()", 10,
                           [f'strategy = "{scoped.group(1)}"']))
        if ".compile(" in answer_code:
            tables.append(("compile", "compile_settings", "Compiled with a loss that fits the labels and the accuracy metric", 10, []))
        rest = 100 - sum(points for *_, points, _ in tables)
        if threshold is None:
            threshold = math.ceil(100 / classes / 5) * 5 / 100  # chance, rounded up: a placeholder the solution passes
            undecided.append(f"[[checks]] accuracy: threshold {threshold:g} is only chance level, a placeholder; once the "
                             "lab runs, `grader check` grades the solution and the playground's starting code in the grader's "
                             "training and prints the threshold to set between them")
        else:
            undecided.append(f"[[checks]] accuracy: threshold {threshold:g} is yours; `grader check` prints the one that "
                             "grading the solution and the playground's starting code suggests")
        tables.append(("accuracy", "validation_accuracy", "Validation accuracy after training in the grader", rest,
                       [f"threshold = {threshold:g}"]))
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
