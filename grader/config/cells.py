"""Pure predicates and transforms on notebook cells: take a cell or its source, return a value.

These encode the codelab's conventions: headings over answer cells end with
`[WORK REQUIRED]` (playground) or `[WORK WAS REQUIRED HERE]` (solution); placeholders
read `# YOUR CODE HERE`, `# YOUR CODE GOES HERE` or `# YOUR LAYERS HERE`; Colab keeps
a cell's id in `metadata.id` when the file has no top-level ids.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re

from grader.faults import ManifestError  # a `### BEGIN SOLUTION` (or GIVEN) without its END, or the reverse

WORK_MARKERS = ("[WORK REQUIRED]", "[WORK WAS REQUIRED HERE]")
PLACEHOLDERS = ("# YOUR CODE HERE", "# YOUR CODE GOES HERE", "# YOUR LAYERS HERE")
DEFAULT_PLACEHOLDER = "# YOUR CODE HERE"
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:\s*(?P<placeholder>#.*))?$")
_END = re.compile(r"^[ \t]*### END SOLUTION\s*$")
_GIVEN_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN GIVEN\s*$")
_GIVEN_END = re.compile(r"^[ \t]*### END GIVEN\s*$")


def source_of(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def cell_key(cell) -> str | None:
    """The cell's id: the top-level one (nbformat 4.5), else Colab's `metadata.id`."""
    key = cell.get("id")
    if isinstance(key, str) and key:
        return key
    metadata = cell.get("metadata") or {}
    key = metadata.get("id") if isinstance(metadata, dict) else None
    return key if isinstance(key, str) and key else None


def is_code(cell) -> bool:
    return cell.get("cell_type") == "code"


def is_work_heading(cell) -> bool:
    """A markdown cell whose heading marks the cell below as the student's to answer."""
    return cell.get("cell_type") == "markdown" and any(m in source_of(cell) for m in WORK_MARKERS)


def is_heading(cell) -> bool:
    """A markdown cell that starts with a heading (`#`, `##`, ...)."""
    if cell.get("cell_type") != "markdown":
        return False
    first = next((line.strip() for line in source_of(cell).splitlines() if line.strip()), "")
    return first.startswith("#")


def code_lines(source: str) -> list[str]:
    """The cell's code without comments, blank lines or trailing spaces (as far as a line
    can tell: a `#` inside a string ends the line early, which only ever compares alike)."""
    kept = []
    for line in source.splitlines():
        code = line.split("#", 1)[0].rstrip() if "#" in line else line.rstrip()
        if code.strip():
            kept.append(code)
    return kept


def unanswered(source: str, given: str, untouched: tuple[str, ...] = ()) -> bool:
    """Does the cell hold no code of the student's: only what the playground gave, its
    placeholders and comments? (Placeholder comments left above an answer are fine.)
    `untouched`: the code checksums of the same cell as other playgrounds give it (the
    codelab's own, whose starting code differs from the lab's in its words)."""
    return code_lines(source) == code_lines(given) or code_checksum(source) in untouched


def code_checksum(source: str) -> str:
    """Hash of a cell's code lines (comments, blank lines and trailing spaces left out)."""
    return hashlib.sha256("\n".join(code_lines(source)).encode()).hexdigest()


def has_placeholder(source: str) -> bool:
    return any(p in source for p in PLACEHOLDERS)


def checksum(source: str) -> str:
    """Hash of a cell's code that ignores trailing spaces and blank lines at the ends."""
    lines = [line.rstrip() for line in source.strip().splitlines()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def assigns_name(source: str, name: str) -> bool:
    """Does the code bind `name` in the notebook's namespace (`name = ...` at top level, or
    inside a `with`, `if`, `try` or loop there, as `with strategy.scope(): model = ...`)?
    Tolerates syntax errors (then: a line `name = ...`, at the left or one level in)."""
    try:
        return any(_binds(node, name) for node in ast.parse(source).body)
    except (SyntaxError, ValueError, RecursionError):
        return re.search(rf"^(?:    )?{re.escape(name)}\s*=(?!=)", source, re.MULTILINE) is not None


def _binds(node, name: str) -> bool:
    """Is `name` stored to in `node`, outside the scopes of its own (def, class, lambda,
    comprehension)? Assignments of every form count (tuple targets, `with ... as`, `for`,
    the walrus), an annotation without a value does not."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                         ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return False
    if isinstance(node, ast.AnnAssign) and node.value is None:
        return False
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name:
        return True
    return any(_binds(child, name) for child in ast.iter_child_nodes(node))


def parsed(source: str):
    """The cell's syntax tree, IPython lines (`%magic`, `!shell`) left out; None if it does not parse."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return None


def assigned_names(source: str) -> set[str]:
    """The names a cell binds at top level by assignment, `def` or `class` (imports left
    out: importing a module again under its usual name changes nothing)."""
    tree = parsed(source)
    if tree is None:
        return set()
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif not isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {child.id for child in ast.walk(node) if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)
                      and _binds(node, child.id)}
    return found


def outside_scope(source: str, name: str) -> list[tuple[int, str]]:
    """The statements of the cell (outside any def or class) that bind `name` or call
    `name.compile(...)` without being inside a `with <strategy>.scope():` block, as (line,
    text of the line). A cell that does not parse has none as far as this says."""
    tree = parsed(source)
    if tree is None:
        return []
    lines = source.splitlines()
    found: list[tuple[int, str]] = []

    def scoped(node) -> bool:
        return isinstance(node, (ast.With, ast.AsyncWith)) and any(
            isinstance(item.context_expr, ast.Call) and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr == "scope" for item in node.items)

    def compiles(node) -> bool:
        return any(isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "compile"
                   and isinstance(call.func.value, ast.Name) and call.func.value.id == name for call in ast.walk(node))

    def visit(statements, inside: bool) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            blocks = [getattr(node, field) for field in ("body", "orelse", "finalbody") if isinstance(getattr(node, field, None), list)]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            if blocks:
                for block in blocks:
                    visit(block, inside or scoped(node))
                continue
            if not inside and (_binds(node, name) or compiles(node)):
                number = getattr(node, "lineno", 0)
                found.append((number, lines[number - 1].strip() if 0 < number <= len(lines) else ""))

    visit(tree.body, False)
    return found


def compared_not_set(source: str, attribute: str) -> list[tuple[int, str]]:
    """Statements that compare an object's `attribute` and throw the answer away, where an
    assignment was meant (`pretrained_model.trainable == False`), as (line, text)."""
    tree = parsed(source)
    if tree is None:
        return []
    lines = source.splitlines()
    return [(node.lineno, lines[node.lineno - 1].strip() if node.lineno <= len(lines) else "")
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Compare)
            and isinstance(node.value.left, ast.Attribute) and node.value.left.attr == attribute
            and len(node.value.ops) == 1 and isinstance(node.value.ops[0], (ast.Eq, ast.Is))]


def commented_out_assignments(source: str, attribute: str) -> list[tuple[int, str]]:
    """Comment lines that would assign an object's `attribute` if their # were taken out
    (`# pretrained_model.trainable = False`), as (line, text)."""
    found = []
    for number, line in enumerate(source.splitlines(), 1):
        text = line.strip()
        if not text.startswith("#"):
            continue
        tree = parsed(text.lstrip("#").strip())
        statement = tree.body[0] if tree is not None and len(tree.body) == 1 else None
        if isinstance(statement, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == attribute for t in statement.targets):
            found.append((number, text))
    return found


def defines_only(source: str) -> bool:
    """Does the cell only define things (functions, classes, imports, a docstring), so that
    running it earlier than its place changes nothing but what names exist?"""
    tree = parsed(source)
    allowed = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    return tree is not None and bool(tree.body) and all(
        isinstance(node, allowed) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in tree.body)


def imported_modules(source: str) -> list[str]:
    """The modules a cell imports at top level (`import a.b`, `from a import b` -> a.b, a).

    Lines of IPython syntax (`%magic`, `!shell`) are skipped; a cell that does not parse
    imports nothing as far as this says."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"] + [node.module]
    return list(dict.fromkeys(found))


def strip_solutions(source: str) -> str:
    """The playground's version of an answer cell: each `### BEGIN SOLUTION` ... `### END
    SOLUTION` block replaced by its placeholder, each `### BEGIN GIVEN` ... `### END GIVEN`
    block by the lines it holds, uncommented.

    A solution block's placeholder is the comment written after BEGIN SOLUTION (`### BEGIN
    SOLUTION  # YOUR LAYERS HERE`), or `# YOUR CODE HERE`, at the marker's indentation; a
    solution block right after a given block has none: the given block is what the
    playground shows in its place. A given block holds the playground's lines commented
    out (`# ` after the marker's indentation, so that the source still runs as the
    solution); blank lines stay blank.
    """
    out: list[str] = []
    inside, given, after_given = False, None, False
    for number, line in enumerate(source.splitlines(), start=1):
        begin, end = _BEGIN.match(line), _END.match(line)
        given_begin, given_end = _GIVEN_BEGIN.match(line), _GIVEN_END.match(line)
        if given is not None:
            if given_end:
                given, after_given = None, True
            elif begin or end or given_begin:
                raise ManifestError(f"line {number}: a marker inside a GIVEN block; close it with ### END GIVEN first")
            else:
                out.append(_uncommented(line, given, number))
            continue
        if given_begin:
            if inside:
                raise ManifestError(f"line {number}: BEGIN GIVEN inside a solution block; put it just before the block")
            given = given_begin["indent"]
        elif given_end:
            raise ManifestError(f"line {number}: END GIVEN without BEGIN GIVEN")
        elif begin:
            if inside:
                raise ManifestError(f"line {number}: BEGIN SOLUTION inside another solution block")
            if after_given and begin["placeholder"]:
                raise ManifestError(f"line {number}: a solution block right after a GIVEN block takes the given "
                                          f"lines as its placeholder; remove {begin['placeholder'].strip()!r}")
            inside = True
            if not after_given:
                out.append(begin["indent"] + (begin["placeholder"] or DEFAULT_PLACEHOLDER).strip())
        elif end:
            if not inside:
                raise ManifestError(f"line {number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
        after_given = False
    if inside:
        raise ManifestError("BEGIN SOLUTION is never closed by END SOLUTION")
    if given is not None:
        raise ManifestError("BEGIN GIVEN is never closed by END GIVEN")
    return "\n".join(out)


def _uncommented(line: str, indent: str, number: int) -> str:
    """A given block's line as the playground shows it: `<indent># x` -> `<indent>x`."""
    if not line.strip():
        return line
    if not line.startswith(indent + "#"):
        raise ManifestError(f"line {number}: each line of a GIVEN block is the playground's line commented out, "
                                  f"`# ` after the block's indentation ({len(indent)} spaces)")
    rest = line[len(indent) + 1:]
    return indent + (rest[1:] if rest.startswith(" ") else rest)


def given_block(lines: list[str], indent: str = "") -> list[str]:
    """A `### BEGIN GIVEN` ... `### END GIVEN` block that shows `lines` in the playground
    (the reverse of what strip_solutions does): the markers at the lines' common
    indentation (`indent` when there is no line), each non-blank line commented out after it."""
    filled = [line for line in lines if line.strip()]
    if filled:
        indent = os.path.commonprefix([re.match(r"[ \t]*", line).group(0) for line in filled])
    body = [line if not line.strip() else indent + "# " + line[len(indent):] for line in lines]
    return [f"{indent}### BEGIN GIVEN", *body, f"{indent}### END GIVEN"]


def has_solution_markers(source: str) -> bool:
    return any(_BEGIN.match(line) for line in source.splitlines())


def solution_code(source: str) -> str:
    """What the solution runs: the source without its given blocks and marker lines."""
    kept, given = [], False
    for line in source.splitlines():
        if _GIVEN_BEGIN.match(line) or _GIVEN_END.match(line):
            given = bool(_GIVEN_BEGIN.match(line))
        elif not (given or _BEGIN.match(line) or _END.match(line)):
            kept.append(line)
    return "\n".join(kept)


def as_playground_heading(source: str) -> str:
    return source.replace("[WORK WAS REQUIRED HERE]", "[WORK REQUIRED]")
