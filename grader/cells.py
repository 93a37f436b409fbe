"""Pure predicates and transforms on notebook cells: take a cell or its source, return a value.

These encode the codelab's conventions: headings over answer cells end with
`[WORK REQUIRED]` (playground) or `[WORK WAS REQUIRED HERE]` (solution); placeholders
read `# YOUR CODE HERE`, `# YOUR CODE GOES HERE` or `# YOUR LAYERS HERE`; Colab keeps
a cell's id in `metadata.id` when the file has no top-level ids.
"""

from __future__ import annotations

import ast
import hashlib
import re

from grader.faults import ManifestError  # a `### BEGIN SOLUTION` without its `### END SOLUTION`, or the reverse

WORK_MARKERS = ("[WORK REQUIRED]", "[WORK WAS REQUIRED HERE]")
PLACEHOLDERS = ("# YOUR CODE HERE", "# YOUR CODE GOES HERE", "# YOUR LAYERS HERE")
DEFAULT_PLACEHOLDER = "# YOUR CODE HERE"
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:\s*(?P<placeholder>#.*))?$")
_END = re.compile(r"^[ \t]*### END SOLUTION\s*$")


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


def unanswered(source: str, given: str) -> bool:
    """Does the cell hold no code of the student's: only what the playground gave, its
    placeholders and comments? (Placeholder comments left above an answer are fine.)"""
    return code_lines(source) == code_lines(given)


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
    """Replace each `### BEGIN SOLUTION` ... `### END SOLUTION` block by its placeholder.

    The placeholder is the comment written after BEGIN SOLUTION (`### BEGIN SOLUTION
    # YOUR LAYERS HERE`), or `# YOUR CODE HERE`, at the marker's indentation.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if inside:
                raise ManifestError(f"line {number}: BEGIN SOLUTION inside another solution block")
            inside = True
            out.append(begin["indent"] + (begin["placeholder"] or DEFAULT_PLACEHOLDER).strip())
        elif end:
            if not inside:
                raise ManifestError(f"line {number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ManifestError("BEGIN SOLUTION is never closed by END SOLUTION")
    return "\n".join(out)


def has_solution_markers(source: str) -> bool:
    return any(_BEGIN.match(line) for line in source.splitlines())


def solution_code(source: str) -> str:
    """The source with only the marker lines removed: what the solution runs."""
    return "\n".join(line for line in source.splitlines() if not (_BEGIN.match(line) or _END.match(line)))


def as_playground_heading(source: str) -> str:
    return source.replace("[WORK WAS REQUIRED HERE]", "[WORK REQUIRED]")
