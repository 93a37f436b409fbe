"""The submitted notebook as HTML, rendered in a child process with a budget.

A notebook is the student's: its markdown, outputs and metadata are hostile until
rendered safe, and rendering them can be slow (a 48 KB markdown cell of `![` takes
quadratic time in the markdown parser) or large (60,000 markdown cells took 3.8 GB).
So rendering runs in a child process that limits its own CPU time and memory before it
reads the notebook, and the parent waits with a wall-clock limit as well. A notebook over
the budget, or one that cannot be rendered, is shown as plain text (escaped, capped) with
a note saying why; no notebook stalls or crashes a batch.

What the child renders is a copy rebuilt from an allow-list (`safe_notebook`): cell
sources and execution counts, plain-text, PNG and JPEG outputs (each capped), image
width and height as integers. Every other metadata key, which nbconvert's templates
would write into HTML attributes (`width=...` unquoted, `alt`, `filenames`, tags, ids),
is dropped. Markdown is rendered with raw HTML escaped, then sanitised by an allow-list:
no script, no event handlers, links only to http(s), mailto and anchors, images only
from data: URLs.

This file runs as the child (`python -I render_notebook.py`), so it imports nothing from
the grader package: the child loads only this file and the libraries. Loading them costs
more than most renderings (about 0.5 s of CPU against 0.2 s), so a process that renders
many notebooks keeps a renderer server (`render_notebook.py --serve`) that has loaded them
once and forks a fresh child for each notebook; the child sets the same limits on itself
before it reads the notebook, and the server stops it at the wall-clock limit. Where no
server can be had, each notebook gets a child of its own, as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import threading
import time

import jinja2

MAX_OUTPUT = 256 * 1024  # characters of one output kept in the rendered notebook
MAX_PLAIN = 512 * 1024  # characters of the plain-text rendering, in all
MAX_PLAIN_CELLS = 1000  # cells of the plain-text rendering
MAX_IMAGE_SIDE = 10_000  # pixels: a width or height above it is dropped
IMAGE_TYPES = ("image/png", "image/jpeg")
TEXT_TYPE = "text/plain"
CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
MEMORY_ERROR_EXIT = 3
RENDER_ERROR_EXIT = 4


@dataclasses.dataclass(frozen=True)
class Budget:
    """What rendering one notebook may cost: CPU seconds and address space (MiB)."""

    cpu_seconds: int = 10
    memory_mb: int = 1024

    @property
    def wall_seconds(self) -> float:
        # Only a child blocked on something would reach it: CPU time runs out first.
        return 3 * self.cpu_seconds + 10


BUDGET = Budget()


@dataclasses.dataclass(frozen=True)
class Rendering:
    """The notebook as sanitised HTML (`html`), or as plain `cells` with a `note` why."""

    html: str | None
    cells: tuple[dict, ...] = ()
    note: str = ""


# --- the parent: run the child within the budget ------------------------------------------


WALL_EXIT = -1000  # a server's status for a child it stopped at the wall-clock limit


def render(notebook, budget: Budget = BUDGET) -> Rendering:
    """Render `notebook` (a parsed .ipynb) in a child process within `budget`."""
    try:
        payload = json.dumps(notebook).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as error:
        return plain(notebook, f"the renderer could not be started ({type(error).__name__}: {error})")
    server = _SERVERS.take()
    try:
        answer = server.render(payload, budget) if server is not None else None
    finally:
        _SERVERS.give_back(server)
    if answer is None:  # no server, or it failed: a child of the notebook's own
        answer = _render_alone(payload, budget)
    if isinstance(answer, str):
        return plain(notebook, answer)
    status, out, err = answer
    if status == 0:
        return Rendering(out.decode("utf-8"))
    if status == WALL_EXIT:
        return plain(notebook, f"rendering took longer than {budget.wall_seconds:g} s and was stopped")
    return plain(notebook, _why(status, err, budget))


def _render_alone(payload: bytes, budget: Budget):
    """(status, stdout, stderr) of a child started for this notebook alone, or why it failed."""
    command = [sys.executable, "-I", os.path.abspath(__file__), str(budget.cpu_seconds), str(budget.memory_mb)]
    try:
        child = subprocess.run(command, input=payload, capture_output=True, timeout=budget.wall_seconds)
    except subprocess.TimeoutExpired:  # run() has killed it
        return WALL_EXIT, b"", b""
    except (OSError, ValueError) as error:
        return f"the renderer could not be started ({type(error).__name__}: {error})"
    return child.returncode, child.stdout, child.stderr


def _why(status: int, err: bytes, budget: Budget) -> str:
    if status in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"rendering used up its {budget.cpu_seconds} s of CPU time and was stopped"
    if status == MEMORY_ERROR_EXIT:
        return f"rendering needed more than its {budget.memory_mb} MiB of memory and was stopped"
    if status == RENDER_ERROR_EXIT:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return f"the notebook could not be rendered ({lines[-1][:300] if lines else 'no reason given'})"
    return f"rendering stopped unexpectedly (exit status {status})"


class _Server:
    """A renderer server of this process (`render_notebook.py --serve`), spoken to over its
    stdin and stdout: a request is a JSON header line then the notebook; an answer, a JSON
    header line then the child's stdout and stderr."""

    SLACK = 10.0  # seconds past the budget's wall-clock limit before the server itself is given up

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), "--serve"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def render(self, payload: bytes, budget: Budget):
        """(status, stdout, stderr), or None if the server failed (it is then stopped)."""
        header = {"cpu_seconds": budget.cpu_seconds, "memory_mb": budget.memory_mb, "wall_seconds": budget.wall_seconds, "size": len(payload)}
        deadline = time.monotonic() + budget.wall_seconds + self.SLACK
        try:
            self.process.stdin.write(json.dumps(header).encode() + b"\n" + payload)
            self.process.stdin.flush()
            answer = json.loads(_read_line(self.process.stdout.fileno(), deadline))
            out = _read_exactly(self.process.stdout.fileno(), answer["out"], deadline)
            err = _read_exactly(self.process.stdout.fileno(), answer["err"], deadline)
            return int(answer["status"]), out, err
        except (OSError, ValueError, KeyError, TypeError, TimeoutError):
            self.stop()
            return None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _Servers:
    """The idle renderer servers of this process: a thread takes one (started if none is
    idle) and gives it back; a few are kept. The servers end with the process (their stdin
    closes)."""

    KEEP = 4

    def __init__(self):
        self.idle: list[_Server] = []
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.broken = False

    def take(self) -> _Server | None:
        with self.lock:
            if self.pid != os.getpid():  # a forked copy of this process: its parent's servers are not its own
                self.idle, self.pid = [], os.getpid()
            if self.idle:
                return self.idle.pop()
            if self.broken:
                return None
        try:
            return _Server()
        except OSError:
            self.broken = True
            return None

    def give_back(self, server: _Server | None) -> None:
        if server is None:
            return
        with self.lock:
            if server.alive and len(self.idle) < self.KEEP and self.pid == os.getpid():
                self.idle.append(server)
                return
        server.stop()


_SERVERS = _Servers()


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = _read_some(fd, min(left, 1 << 20), deadline)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_line(fd: int, deadline: float, limit: int = 4096) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        if len(line) > limit:
            raise ValueError("the renderer's answer has no header")
        line += _read_some(fd, 1, deadline)
    return line


def _read_some(fd: int, size: int, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([fd], [], [], left)[0]:
        raise TimeoutError("the renderer did not answer in time")
    chunk = os.read(fd, size)
    if not chunk:
        raise OSError("the renderer ended")
    return chunk


def plain(notebook, why: str, limit: int = MAX_PLAIN, max_cells: int = MAX_PLAIN_CELLS) -> Rendering:
    """Each cell's kind and source as text, `limit` characters and `max_cells` cells in all,
    with a note saying why."""
    cells, left = [], limit
    raw_cells = notebook.get("cells") if isinstance(notebook, dict) else None
    raw_cells = raw_cells if isinstance(raw_cells, list) else []
    for index, cell in enumerate(raw_cells):
        if left <= 0 or index == max_cells:
            cells.append({"kind": "", "text": f"[... {len(raw_cells) - index} more cells not shown ...]"})
            break
        cell = cell if isinstance(cell, dict) else {}
        text = _text(cell.get("source"))
        if len(text) > left:
            text = text[:left] + f"\n[... {len(text) - left} more characters not shown ...]"
        left -= len(text)
        cells.append({"kind": str(cell.get("cell_type", "cell"))[:20], "text": text})
    note = f"This notebook is shown as plain text: {why}. Its sources are below; outputs are left out."
    return Rendering(None, tuple(cells), note)


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


# --- the allow-list: what of a notebook reaches nbconvert ---------------------------------


def safe_notebook(notebook: dict) -> dict:
    """A copy of `notebook` holding only what renders safely (see the module's docstring)."""
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"language_info": {"name": "python"}},
        "cells": [safe_cell(c) for c in cells if isinstance(c, dict)] if isinstance(cells, list) else [],
    }


def safe_cell(cell: dict) -> dict:
    """A markdown or code cell with its source, (code) its count and safe outputs, no metadata.
    A raw cell becomes markdown showing its text as a code block, never as HTML."""
    kind, source = cell.get("cell_type"), _text(cell.get("source"))
    safe = {"cell_type": "markdown", "metadata": {}, "source": source}
    if isinstance(cell.get("id"), str) and CELL_ID.fullmatch(cell["id"]):
        safe["id"] = cell["id"]
    if kind == "code":
        outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
        safe.update(cell_type="code", execution_count=_count(cell.get("execution_count")),
                    outputs=[o for o in map(safe_output, outputs) if o is not None])
    elif kind == "markdown":
        safe["attachments"] = _attachments(cell.get("attachments"))
    else:
        safe["source"] = "".join(f"    {line}\n" for line in source.splitlines())
    return safe


def safe_output(output) -> dict | None:
    """Streams, errors, and results or displays cut down to text, PNG and JPEG; None otherwise."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream" and output.get("name") in ("stdout", "stderr"):
        return {"output_type": "stream", "name": output["name"], "text": _capped(_text(output.get("text")))}
    if kind == "error":
        lines = output.get("traceback") if isinstance(output.get("traceback"), list) else []
        traceback = _capped("\n".join(line for line in lines if isinstance(line, str)))
        return {"output_type": "error", "ename": _capped(_text(output.get("ename"))), "evalue": _capped(_text(output.get("evalue"))), "traceback": [traceback]}
    if kind in ("display_data", "execute_result"):
        data, metadata = _data(output.get("data")), _image_metadata(output.get("metadata"))
        safe = {"output_type": kind, "data": data, "metadata": {k: v for k, v in metadata.items() if k in data}}
        if kind == "execute_result":
            safe["execution_count"] = _count(output.get("execution_count"))
        return safe
    return None


def _data(data) -> dict:
    data = data if isinstance(data, dict) else {}
    kept = {}
    for kind in IMAGE_TYPES:
        image = _text(data.get(kind))
        if image and BASE64.fullmatch(image):
            kept[kind] = re.sub(r"\s+", "", image)
    if sum(len(v) for v in kept.values()) > MAX_OUTPUT:
        kept = {TEXT_TYPE: f"[image of {sum(len(v) for v in kept.values()) // 1024} KiB left out]"}
    elif TEXT_TYPE in data:
        kept[TEXT_TYPE] = _capped(_text(data[TEXT_TYPE]))
    return kept or {TEXT_TYPE: "[rich output left out]"}


def _image_metadata(metadata) -> dict:
    """Only width and height of images, as integers: nbconvert writes them unquoted."""
    metadata = metadata if isinstance(metadata, dict) else {}
    kept = {}
    for kind in IMAGE_TYPES:
        own = metadata.get(kind) if isinstance(metadata.get(kind), dict) else {}
        sizes = {key: _pixels(own.get(key, metadata.get(key))) for key in ("width", "height")}
        sizes = {key: value for key, value in sizes.items() if value is not None}
        if sizes:
            kept[kind] = sizes
    return kept


def _pixels(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = int(float(value))
    except (ValueError, OverflowError):
        return None
    return number if 0 < number <= MAX_IMAGE_SIDE else None


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else None


def _capped(text: str) -> str:
    if len(text) <= MAX_OUTPUT:
        return text
    return text[: MAX_OUTPUT // 2] + "\n[... output cut ...]\n" + text[-MAX_OUTPUT // 2 :]


def _attachments(attachments) -> dict:
    """Images attached to a markdown cell, as base64 PNG or JPEG only."""
    kept = {}
    for name, bundle in (attachments.items() if isinstance(attachments, dict) else ()):
        data = _data(bundle)
        if isinstance(name, str) and any(kind in data for kind in IMAGE_TYPES):
            kept[name] = {kind: data[kind] for kind in IMAGE_TYPES if kind in data}
    return kept


# --- the child: render within its limits ----------------------------------------------------


def _limit_self(cpu_seconds: int, memory_mb: int) -> None:
    """Limits the child sets on itself before it reads any of the notebook."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    memory = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed child leaves no core file behind


def to_html(notebook: dict) -> str:
    """The body of the page: `notebook` made safe, rendered by nbconvert's basic template,
    markdown with raw HTML escaped and every piece of HTML sanitised."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic", sanitize_html=True, filters={"markdown2html": _markdown, "clean_html": sanitise})
    body, _ = exporter.from_notebook_node(nbformat.from_dict(safe_notebook(notebook)))
    return body


@jinja2.pass_context  # the filter needs the cell, for its attachments
def _markdown(context, source: str) -> str:
    from nbconvert.filters.markdown_mistune import MarkdownWithMath

    attachments = context.get("cell", {}).get("attachments", {})
    return MarkdownWithMath(renderer=_renderer(attachments)).render(source)



def _renderer(attachments: dict):
    from nbconvert.filters.markdown_mistune import IPythonRenderer

    class EscapingRenderer(IPythonRenderer):
        """nbconvert's markdown renderer with raw HTML escaped, harmful links refused,
        mermaid shown as code, and a missing attachment shown as its alt text."""

        def block_mermaidjs(self, code: str) -> str:
            return self.block_code(code)

        def _embed_image_or_attachment(self, src: str) -> str:
            name = src.removeprefix("attachment:")
            if name != src and name not in self.attachments:
                return ""
            return super()._embed_image_or_attachment(src)

    return EscapingRenderer(escape=True, allow_harmful_protocols=False, attachments=attachments)


_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "input", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]*")
_LINK = re.compile(r"(https?:|mailto:|#)", re.IGNORECASE)


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "id", "title"):
        return True
    if tag == "a":
        return name == "href" and bool(_LINK.match(value))
    if tag == "img":
        return name == "alt" or (name == "src" and bool(_DATA_IMAGE.fullmatch(value)))
    if tag == "input":  # a task list's checkbox
        return (name, value) in (("type", "checkbox"), ("disabled", ""), ("checked", ""))
    return tag == "ol" and name == "start" and value.isdigit()


_cleaner = None


def sanitise(html) -> str:
    """HTML cut down to an allow-list of tags and attributes: no script, no event handler,
    no style, links to http(s), mailto and anchors, images from data: URLs only."""
    global _cleaner
    if _cleaner is None:
        import bleach

        _cleaner = bleach.Cleaner(tags=_TAGS, attributes=_allowed_attribute, protocols={"http", "https", "mailto", "data"}, strip=True, strip_comments=True)
    return _cleaner.clean(html.decode() if isinstance(html, bytes) else str(html))


def main(argv: list[str]) -> int:
    if argv == ["--serve"]:
        return serve()
    cpu_seconds, memory_mb = int(argv[0]), int(argv[1])
    _limit_self(cpu_seconds, memory_mb)
    return _child(sys.stdin.buffer.read(), sys.stdout.buffer, sys.stderr)


def serve() -> int:
    """The renderer server: the libraries loaded (and a notebook rendered, so that what
    they make on first use is made) once; then, for each request on stdin, a forked child
    that limits itself and renders, stopped by the server at the wall-clock limit."""
    to_html({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# warm"},
        {"cell_type": "code", "metadata": {}, "source": "x", "execution_count": 1, "outputs": []}]})
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = requests.readline()
        if not line:
            return 0  # the parent has gone
        header = json.loads(line)
        payload = requests.read(int(header["size"]))
        status, out, err = _fork_child(payload, int(header["cpu_seconds"]), int(header["memory_mb"]), float(header["wall_seconds"]))
        answers.write(json.dumps({"status": status, "out": len(out), "err": len(err)}).encode() + b"\n" + out + err)
        answers.flush()


def _fork_child(payload: bytes, cpu_seconds: int, memory_mb: int, wall_seconds: float):
    """(status, stdout, stderr) of a forked child rendering `payload`; status as a
    subprocess's return code, or WALL_EXIT."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            os.close(out_read)
            os.close(err_read)
            _limit_self(cpu_seconds, memory_mb)
            with open(out_write, "wb") as out, open(err_write, "w", encoding="utf-8") as err:
                code = _child(payload, out, err)
        finally:
            os._exit(code)
    os.close(out_write)
    os.close(err_write)
    got = {out_read: [], err_read: []}
    open_fds, deadline, stopped = [out_read, err_read], time.monotonic() + wall_seconds, False
    while open_fds:
        left = deadline - time.monotonic()
        ready = select.select(open_fds, [], [], max(left, 0))[0] if left > 0 else []
        if not ready:
            os.kill(pid, signal.SIGKILL)
            stopped = True
            break
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                got[fd].append(chunk)
            else:
                open_fds.remove(fd)
    for fd in (out_read, err_read):
        os.close(fd)
    _, wait_status = os.waitpid(pid, 0)
    status = WALL_EXIT if stopped else os.waitstatus_to_exitcode(wait_status)
    return status, b"".join(got[out_read]), b"".join(got[err_read])


def _child(payload: bytes, out, err) -> int:
    """Render `payload` (a notebook's JSON) to `out`; the exit status."""
    try:
        notebook = json.loads(payload)
        html = to_html(notebook)
        out.write(html.encode("utf-8"))
    except MemoryError:
        return MEMORY_ERROR_EXIT
    except RecursionError:
        print("RecursionError: the notebook is nested too deeply", file=err)
        return RENDER_ERROR_EXIT
    except Exception as error:  # the parent shows the plain text and this reason
        print(f"{type(error).__name__}: {error}", file=err)
        return RENDER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
