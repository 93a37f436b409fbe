"""What a run reports, held against what the grader can see for itself.

A run's reports (its log, its export) come out of the student's own process: no design
makes them unforgeable, but forging can be made hard and visible. The runner writes
them through files opened before the student's code ran, from a child with a single
thread, with Keras' functions as they were (grader/sandbox/inside.py). The grader then:

- takes the runner's **witness** of each cell over the run's log: a record the runner
  writes once, when the cell has ended, through a descriptor it then closes (the cells
  before the student's first are sealed before any of the student's code runs, so a log
  that blames them is the run's own doing, never the grader's fault);
- holds the compile settings the run reports against the answer's **source**: a loss the
  source never names is not believed;
- and marks, **for the instructor to review**, answers that reach into the runner (the
  garbage collector, frames, threads, descriptors, ctypes, Keras' methods replaced),
  and what the export saw of that (functions replaced, threads still alive).

What stays forgeable, and how it shows, is written in SECURITY.md.
"""

from __future__ import annotations

import ast
import dataclasses
import functools

# names whose import or use reaches past the student's own objects, and what they reach
MODULES = {
    "gc": "the garbage collector (it finds every object, the runner's too)",
    "inspect": "inspect (the runner's frames and code)",
    "ctypes": "ctypes (memory and C functions)",
    "threading": "threads (alive while the runner works)",
    "_thread": "threads (alive while the runner works)",
    "concurrent": "threads (alive while the runner works)",
    "multiprocessing": "other processes",
    "importlib": "importlib (modules reloaded or replaced)",
    "builtins": "builtins (the runner's own functions)",
}
ATTRIBUTES = {
    **{name: "a frame's insides" for name in ("f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame", "gi_frame", "cr_frame")},
    **{name: "a function's insides" for name in ("__code__", "__globals__", "__closure__", "__builtins__", "co_code")},
    "__subclasses__": "every class of the process",
    "_getframe": "the runner's frames", "_current_frames": "the runner's frames", "settrace": "a tracer over the runner",
    "setprofile": "a profiler over the runner", "modules": "sys.modules", "addaudithook": "an audit hook",
}
DESCRIPTORS = frozenset("write pwrite dup dup2 fdopen ftruncate close closerange fork forkpty".split())
STRINGS = {"/proc/self/fd": "the runner's descriptors", "/proc/self/mem": "the process's memory", "/slots": "the sandbox's slots",
           "/runner": "the runner's code"}
KERAS_METHODS = frozenset(
    "to_json get_config get_compile_config save_weights save get_weights from_config compile fit evaluate predict "
    "summary count_params call __call__ build load_weights".split())


@dataclasses.dataclass(frozen=True)
class Reach:
    """One way an answer reaches past its own objects: what, and where."""

    what: str
    cell: str
    line: int

    def __str__(self) -> str:
        return f"{self.what} (cell {self.cell!r}, line {self.line})"


def reaches(cells) -> tuple[Reach, ...]:
    """How the student's cells (RunCells) reach into the runner, Keras or the process,
    one entry per kind, at its first place; () for an answer that only builds its model."""
    found: dict[str, Reach] = {}
    for cell in cells:
        tree = _parsed(cell.source)
        if tree is None:
            continue
        keras_names, modules = _keras_names(tree), _module_names(tree)
        for node in ast.walk(tree):
            for what in _what(node, keras_names, modules):
                found.setdefault(what, Reach(what, cell.key, getattr(node, "lineno", 0)))
    return tuple(found.values())


def _what(node, keras_names: set[str], modules: set[str] = frozenset()):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            root = name.split(".")[0]
            if root in MODULES:
                yield f"uses {MODULES[root]}"
    elif isinstance(node, ast.Attribute):
        if node.attr in ATTRIBUTES and not (node.attr == "modules" and _root(node) != "sys"):
            yield f"reaches {ATTRIBUTES[node.attr]}"
        if node.attr in DESCRIPTORS and _root(node) == "os":
            yield f"works on file descriptors or processes directly (os.{node.attr})"
    elif isinstance(node, ast.Name) and node.id in ("__import__", "__builtins__"):
        yield "imports or reaches modules by a computed name (__import__, __builtins__)"
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        for text, what in STRINGS.items():
            if text in node.value:
                yield f"names {what} ({text})"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in ("setattr", "delattr"):
            yield "changes attributes by name (setattr, delattr)"
        elif node.func.id in ("exec", "eval") or (node.func.id == "compile" and node.args and isinstance(node.args[0], ast.Constant)):
            yield "runs code made from a string (exec, eval, compile)"
    elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and (target.attr in KERAS_METHODS or _root(target) in keras_names
                                                      and target.attr[:1].islower() and not _is_setting(target)):
                yield f"replaces a method of Keras or of the model ({target.attr})"
            elif isinstance(target, ast.Attribute) and _root(target) in modules - keras_names:
                yield f"replaces a function or value of a module ({ast.unparse(target)[:60]})"


SETTINGS = frozenset("trainable learning_rate stop_training".split())


def _is_setting(target: ast.Attribute) -> bool:
    """`layer.trainable = False` and the like: settings a lab's answer changes, not methods."""
    return target.attr in SETTINGS


def _root(node) -> str:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _keras_names(tree) -> set[str]:
    """The names the cell binds to TensorFlow, Keras or their parts (import ... as ...)."""
    names = {"tf", "keras"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in ("tensorflow", "keras")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("tensorflow", "keras"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _module_names(tree) -> set[str]:
    """The names the cell binds to modules (import x, import x as y)."""
    return {(a.asname or a.name).split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}


@functools.lru_cache(maxsize=256)
def _parsed(source: str):
    """The cell as Python (IPython's magics and shell lines turned into calls), or None."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - without IPython, or a cell it cannot read: parse it as it is
        pass
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# --- the compile settings against the source -----------------------------------------------


def losses_in_source(cells) -> tuple[str, ...] | None:
    """The losses the cells' `.compile(...)` calls name, as written ('sparse_categorical_crossentropy',
    'SparseCategoricalCrossentropy'); None if a call names it through a variable (nothing to hold
    the report against), () if no cell compiles."""
    losses: list[str] = []
    for cell in cells:
        tree = _parsed(cell.source)
        if tree is None:
            return None
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "compile":
                given = next((k.value for k in node.keywords if k.arg == "loss"), node.args[1] if len(node.args) > 1 else None)
                if any(k.arg is None for k in node.keywords):
                    return None  # compile(**settings)
                if given is None:
                    continue
                name = _written_name(given)
                if name is None:
                    return None
                losses.append(name)
    return tuple(losses)


def _written_name(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return None  # a variable, an expression


def same_loss(a: str, b: str) -> bool:
    """Whether two ways of writing a loss name the same one ('sparse_categorical_crossentropy', 'SparseCategoricalCrossentropy')."""
    return a.replace("_", "").lower() == b.replace("_", "").lower()


def loss_problem(reported: str, cells) -> str:
    """Why the loss the run reports cannot be believed ("" if it can): the answer's compile
    calls all name their loss, and none of them names this one."""
    written = losses_in_source(cells)
    if not written or any(same_loss(reported, name) for name in written):
        return ""
    return (f"the run reports the model compiled with loss {reported!r}, but the answer's source compiles it only with "
            f"{', '.join(repr(name) for name in dict.fromkeys(written))}: the grader does not believe a report that the source "
            "contradicts (was Keras' get_compile_config changed?); compile the model as the lab says")


# --- the run's log against the runner's witness ------------------------------------------


def reconciled(log: tuple[dict, ...], witness, run_cells, student=frozenset()) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    """The run's log with each cell's status taken from the runner's witness where it has
    one, and what disagreed, in words. `witness`: per run cell, the records the runner
    sealed (normally one; none if the run ended inside the cell or closed the runner's
    descriptor; more if the run wrote into it). The witness of a cell before the student's
    first (`student`: their keys) was sealed before any of the student's code ran and
    decides alone; a later cell's could be written by the cell itself, so there the worse
    of the log and the witness counts."""
    if not witness:
        return log, ()
    entries = {entry.get("key"): dict(entry) for entry in log}
    notes: list[str] = []
    sealed = True
    for cell, records in zip(run_cells, witness):
        sealed = sealed and cell.key not in student
        if not records:
            if cell.key in entries:  # the runner logs a cell only once it has sealed its record
                notes.append(f"the run's log has cell {cell.key!r}, which the runner never saw end: left out")
                del entries[cell.key]
            continue
        statuses = {r.get("status") for r in records}
        if len(records) > 1:
            notes.append(f"the run wrote into the runner's own record of cell {cell.key!r} ({len(records)} records where the "
                         "runner writes one)")
        status = "error" if "error" in statuses or statuses - {"ok"} else "ok"
        error = next((r.get("error") for r in records if r.get("error")), "an error")
        entry = entries.get(cell.key)
        if not sealed and entry is not None and entry.get("status") == "error":
            if status != "error":
                notes.append(f"the runner's record of cell {cell.key!r} says it ended 'ok'; the run's log says it raised: the error counts")
            continue  # the worse of the two: the log's error stands
        if entry is None:
            notes.append(f"the run's log leaves out cell {cell.key!r}, which the runner saw end ({status})")
            entries[cell.key] = {"key": cell.key, "role": cell.role, "status": status,
                                 **({"error": {"name": error, "message": "(from the runner's record; the run's log left it out)"}}
                                    if status == "error" else {})}
        elif entry.get("status") != status:
            said = entry.get("status")
            notes.append(f"the run's log says cell {cell.key!r} ended {said!r}; the runner saw it end {status!r}"
                         + (f" ({error})" if status == "error" else ""))
            entry["status"] = status
            if status == "error":
                entry["error"] = {"name": error, "message": "(from the runner's record; the run's log said it ran without error)"}
            else:
                entry.pop("error", None)
    order = [cell.key for cell in run_cells]
    kept = sorted(entries.values(), key=lambda e: order.index(e.get("key")) if e.get("key") in order else len(order))
    return tuple(kept), tuple(notes)


def sealed_before_answer(witness, run_cells, student_keys) -> bool:
    """Whether the runner sealed a record of every cell before the student's first (they ran
    before any of the student's code: what those records say is the runner's own)."""
    for cell, records in zip(run_cells, witness or ()):
        if cell.key in student_keys:
            return True
        if not records:
            return False
    return False


# --- what the export saw ---------------------------------------------------------------------


def export_notes(export: dict) -> tuple[str, ...]:
    """What the export child saw of the run before it put Keras back, in words."""
    facts = export.get("integrity")
    if not isinstance(facts, dict):
        if export.get("found"):
            return ("the run's export.json was not written by the runner's export (the facts it records are missing): "
                    "the run wrote its own report",)
        return ()
    notes = []
    replaced = [str(name) for name in facts.get("replaced", []) if isinstance(name, str)][:8]
    if replaced:
        notes.append(f"the run had replaced or rewritten functions of Keras or of the runner ({', '.join(replaced)}); "
                     "the export used Keras' own")
    on_answer = [str(name) for name in facts.get("on_answer", []) if isinstance(name, str)][:8]
    if on_answer:
        notes.append(f"the run had set methods on the model itself ({', '.join(on_answer)}); the export used Keras' own")
    threads = facts.get("threads")
    if isinstance(threads, int) and threads > 0:
        notes.append(f"{threads} thread(s) the run started were still running when the model was exported "
                     "(they cannot reach the export, which a process of its own writes)")
    return tuple(notes)


def believed_export(artifact, watcher: str):
    """The artifact as the grader believes it, and why not, in words: in a sandbox, the export
    is believed only if the watcher stopped the run for it ("export"); a run that closed or
    replaced the runner's channel to its watcher reported while its threads and processes
    ran, so nothing it reported of its model is believed."""
    if watcher in ("", "export") or not artifact.export.get("found"):
        return artifact, ()
    if watcher == "tampered":
        why = ("the run pointed the runner's own report files elsewhere before its export (a cell wrote its own report into "
               "them), so nothing it reported of its model is believed")
    else:
        why = ("the run closed the runner's channel to its watcher, so its report of the model was written while its other "
               "threads and processes ran, and is not believed")
    return dataclasses.replace(artifact, export={"found": False, "problem": why}, model_json=None, compile_config=None,
                               weights_path=None), (why,)
