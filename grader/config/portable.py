"""What a lab's own cells need that the grader's sandbox does not give them: a `gs://`
bucket, a TPU, a picture size other than the grader's data, a name that only a TPU (or
a `try:` that succeeds) defines. Each is the instructor's to change in the source
notebook before the lab can run; `grader new` names the cell and what to write.

The cells are read, never run: each finding is a `Problem` with the sentence to print,
and, where the fix is to read an environment variable, the variable and the value that
`[lab.environment]` gives it.
"""

from __future__ import annotations

import ast
import dataclasses
import re

from grader.config import cells
from labs import NOTEBOOK_NAMES  # what the series' notebooks call the values read off them

TPU_CALLS = ("TPUClusterResolver", "TPUStrategy")
ENVIRONMENT_READS = ("environ.get", "getenv")


@dataclasses.dataclass(frozen=True)
class Cell:
    key: str
    heading: str  # the heading it is under, for the instructor to find it
    source: str  # the code the grader runs (an answer's solution)
    answer: bool = False

    @property
    def named(self) -> str:
        return f"cell `{self.key}`" + (f" (under {self.heading.lstrip('# ').strip()!r})" if self.heading else "")


@dataclasses.dataclass(frozen=True)
class Problem:
    said: str  # the line for the instructor
    to_do: bool = True  # False: worth saying, nothing to change
    variable: str = ""  # the environment variable the changed cell reads
    value: str = ""  # its template in [lab.environment]


def problems(run: list[Cell], image_size: int) -> list[Problem]:
    """What each of the lab's cells that the grader runs (in order) needs changing."""
    found: list[Problem] = []
    for index, cell in enumerate(run):
        tree = cells.parsed(cell.source)
        if cell.answer or tree is None:
            continue
        found += _buckets(cell, tree, imports_os=_imports_os(run[: index + 1]))
        found += _image_sizes(cell, tree, image_size)
        found += _tpus(cell, tree)
        found += _undefined_after_try(cell, tree, run[index + 1:])
    return found


def _imports_os(run: list[Cell]) -> bool:
    return any(re.search(r"^\s*import\s+(.*\b)?os\b", cell.source, re.MULTILINE) for cell in run)


def _environment_default(node, parents: dict) -> bool:
    """Is this constant the default of an `os.environ.get(...)` / `os.getenv(...)`?"""
    parent = parents.get(node)
    return isinstance(parent, ast.Call) and ast.unparse(parent.func).endswith(ENVIRONMENT_READS)


def _parents(tree) -> dict:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _buckets(cell: Cell, tree, imports_os: bool) -> list[Problem]:
    """gs:// paths the cell reads as they are (not as an environment variable's default)."""
    parents, found = _parents(tree), []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("gs://")):
            continue
        if _environment_default(node, parents):
            continue
        statement = parents.get(node)
        target = statement.targets[0].id if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                                             and isinstance(statement.targets[0], ast.Name)) else ""
        if target:
            path = node.value
            template = "{data_dir}/" + "/".join(part for part in path.split("/")[-2:] if "*" in part) if "*" in path else "{data_dir}"
            found.append(Problem(
                f"{cell.named} reads the bucket {path!r}, which the grader's sandbox cannot reach: write "
                f"`{target} = os.environ.get('{target}', {path!r})`" + ("" if imports_os else " (and `import os` above it)")
                + f"; [lab.environment] sets {target} to the grader's copy of the data",
                variable=target, value=template.rstrip("/")))
        else:
            found.append(Problem(
                f"{cell.named} reads gs:// on line {node.lineno} (`{ast.unparse(statement) if statement is not None else node.value}`), "
                "which the grader's sandbox cannot reach: read the path from an environment variable "
                "(`os.environ.get('NAME', 'gs://...')`) and give NAME the grader's data in [lab.environment] (docs/authoring.md)"))
    return found


def _image_sizes(cell: Cell, tree, image_size: int) -> list[Problem]:
    """A picture size written as a number (`<the notebook's size name> = [192, 192]`) that is not the data's."""
    found = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.endswith(NOTEBOOK_NAMES["image_size"])):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue
        sizes = value if isinstance(value, (list, tuple)) else [value]
        if sizes and all(isinstance(size, int) for size in sizes) and any(size != image_size for size in sizes):
            name, first = node.targets[0].id, sizes[0]
            found.append(Problem(
                f"{cell.named} sets {name} = {ast.unparse(node.value)}, but the grader's data is {image_size}x{image_size} "
                f"([data] image_size): write `{name} = [int(os.environ.get('{name}', '{first}'))] * {len(sizes)}`; "
                f"[lab.environment] sets {name} to the data's size", variable=name, value="{image_size}"))
    return found


def _asks_tpu(tree) -> list[ast.AST]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(TPU_CALLS)]


def _tpus(cell: Cell, tree) -> list[Problem]:
    """A TPU asked for where none may answer: fine inside a `try:` that has a fallback or
    under an `if`, a failure otherwise."""
    asks = _asks_tpu(tree)
    if not asks:
        return []
    guarded = {id(node) for statement in ast.walk(tree) if isinstance(statement, (ast.Try, ast.If))
               for part in ([*statement.body] if isinstance(statement, ast.Try) and statement.handlers else
                            [*statement.body, *statement.orelse] if isinstance(statement, ast.If) else [])
               for node in ast.walk(part)}
    if all(id(node) in guarded for node in asks):
        return [Problem(f"{cell.named} asks for a TPU and goes on without one (the grader's machine has none)", to_do=False)]
    return [Problem(f"{cell.named} asks for a TPU, which the grader's machine does not have, and fails without one: ask in "
                    "a `try:` and fall back to `tf.distribute.MirroredStrategy()` in `except ValueError:`")]


def _bound(statements) -> set[str]:
    return {node.id for statement in statements for node in ast.walk(statement)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def _undefined_after_try(cell: Cell, tree, later: list[Cell]) -> list[Problem]:
    """Names the cell binds only inside a `try:` body (not before it, nor in every
    `except:`), so that they are undefined when the `try:` fails, read by a later cell."""
    found, before = [], set()
    for statement in tree.body:
        if isinstance(statement, ast.Try) and statement.handlers:
            handled = set.intersection(*(_bound(handler.body) for handler in statement.handlers))
            for name in sorted(_bound(statement.body) - handled - before):
                readers = _readers(name, later)
                if readers:
                    when = "when no TPU answers" if _asks_tpu(statement) else "when its `try:` fails"
                    found.append(Problem(
                        f"{cell.named} leaves `{name}` undefined {when} (it is set only inside `try:`), and "
                        + ", ".join(reader.named for reader in readers) + f" read{'s' if len(readers) == 1 else ''} it: "
                        f"write `{name} = None` before the `try:` in cell `{cell.key}`"))
        before |= _bound([statement])
    return found


def _readers(name: str, later: list[Cell]) -> list[Cell]:
    """The later cells that read `name` before any of them binds it again."""
    readers = []
    for cell in later:
        tree = cells.parsed(cell.source)
        if tree is None:
            continue
        if any(isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load) for node in ast.walk(tree)):
            readers.append(cell)
        if name in cells.assigned_names(cell.source):
            break
    return readers
