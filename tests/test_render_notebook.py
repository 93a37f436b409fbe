"""The student's notebook as HTML: metadata never becomes markup, markdown renders as
markdown (sanitised), and hostile notebooks cost a bounded budget, then read as plain text."""

import json
import os
import time
from html.parser import HTMLParser

import nbformat
import pytest

from conftest import ASSIGNMENT
from grader.reports import render_notebook, report
from grader.reports.render_notebook import Budget

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
XSS_WIDTH = "1 src=x onerror=alert(document.domain)//"


class Elements(HTMLParser):
    """Start tags with their attributes, and what could run: event handlers, javascript: URLs, scripts."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag):
        return [attrs for name, attrs in self.tags if name == tag]

    def dangers(self):
        return [
            (tag, name, value)
            for tag, attrs in self.tags
            for name, value in attrs.items()
            if tag in ("script", "iframe", "object", "embed", "style", "form", "base", "meta")
            or name.startswith("on")
            or name == "style"
            or "javascript:" in (value or "").lower()
        ]


def notebook(*cells):
    """Not validated: a submission need not be a valid notebook to be rendered."""
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}


def image_output(metadata, data=None):
    return nbformat.v4.new_output("display_data", data=data or {"image/png": PNG, "text/plain": "<Figure>"}, metadata=metadata)


def code_cell(source="x", outputs=(), **fields):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = list(outputs)
    cell.update(fields)
    return cell


def render(nb, budget=Budget()):
    rendering = render_notebook.render(nb, budget)
    assert rendering.html is not None, rendering.note
    return Elements(rendering.html)


def test_image_metadata_cannot_add_attributes():
    outputs = [
        image_output({"image/png": {"width": XSS_WIDTH, "height": "20"}}),
        image_output({"width": XSS_WIDTH, "height": 10**9, "unconfined": "x onmouseover=alert(1)", "alt": '" onerror="alert(2)',
                      "filenames": {"image/png": "/etc/passwd"}, "needs_background": "dark"}),
        image_output({"image/jpeg": {"width": 30.7}}, {"image/jpeg": PNG}),
    ]
    page = render(notebook(code_cell(outputs=outputs)))
    images = page.find("img")
    assert len(images) == 3 and page.dangers() == []
    assert [(i.get("width"), i.get("height")) for i in images] == [(None, "20"), (None, None), ("30", None)]
    assert all(set(i) <= {"src", "alt", "width", "height"} and i["src"].startswith("data:image/") for i in images)
    assert all("onerror" not in i["alt"] and "passwd" not in i["src"] for i in images)


def test_cell_fields_that_become_markup_are_coerced_or_dropped():
    hostile = '"><img src=x onerror=alert(1)>'
    result = {"output_type": "execute_result", "data": {"text/plain": hostile}, "metadata": {}, "execution_count": hostile}
    stream = {"output_type": "stream", "name": "stdout", "text": [hostile, "\x1b[31m<script>alert(4)</script>"]}
    error = {"output_type": "error", "ename": hostile, "evalue": hostile, "traceback": [hostile, 7]}
    cell = code_cell(outputs=[result, stream, error],
                     execution_count=hostile, metadata={"tags": [hostile], "alt": hostile, "magics_language": hostile})
    cell["id"] = hostile
    markdown = nbformat.v4.new_markdown_cell("text", metadata={"tags": [hostile]})
    page = render(notebook(cell, markdown, nbformat.v4.new_raw_cell("<script>alert(3)</script>", metadata={"raw_mimetype": "text/html"})))
    assert page.dangers() == [] and page.find("img") == []
    text = "".join(page.text)
    assert "<script>alert(3)</script>" in text  # the raw cell, as text
    assert text.count(hostile) == 3 and "<script>alert(4)</script>" in text  # outputs, as text


def test_rich_outputs_are_left_out():
    outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": "<b>rich</b>", "application/javascript": "alert(1)", "image/svg+xml": "<svg onload=alert(2)>"}),
        nbformat.v4.new_output("display_data", data={"image/png": "not base64 <script>"}),
        {"output_type": "unknown", "data": {"text/plain": "?"}},
    ]
    page = render(notebook(code_cell(outputs=outputs)))
    assert page.dangers() == [] and page.find("b") == [] and page.find("img") == []
    assert "".join(page.text).count("[rich output left out]") == 2


def test_markdown_renders_as_markdown_and_raw_html_as_text():
    source = (
        "## Imports\n\nSome **bold**, <b>raw</b> <img src=x onerror=alert(1)> <script>alert(2)</script>\n\n"
        "[bad](javascript:alert(3)) [good](https://keras.io) ![remote](https://example.org/a.png) "
        "![inline](data:image/png;base64," + PNG + ") ![attached](attachment:a.png) ![missing](attachment:gone.png)\n\n"
        "```mermaid\n<img src=x onerror=alert(4)>\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    cell = nbformat.v4.new_markdown_cell(source)
    cell["attachments"] = {"a.png": {"image/png": PNG}, "bad.html": {"text/html": "<script>alert(5)</script>"}}
    page = render(notebook(cell))
    assert page.dangers() == []
    assert ("h2", {"id": "Imports"}) in page.tags and page.find("strong") and page.find("table")
    assert page.find("b") == [] and page.find("script") == []
    text = "".join(page.text)
    assert "<b>raw</b>" in text and "<img src=x onerror=alert(1)>" in text and "<img src=x onerror=alert(4)>" in text
    assert [a.get("href") for a in page.find("a") if "anchor-link" not in a.get("class", "")] == ["#harmful-link", "https://keras.io"]
    sources = [i.get("src") for i in page.find("img")]
    assert sources == [None, f"data:image/png;base64,{PNG}", f"data:image/png;base64,{PNG}", None]  # nothing fetched


def test_honest_notebook_renders_richly():
    nb = nbformat.read(os.path.join(ASSIGNMENT, "source.ipynb"), as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.execution_count = 3
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="Tensorflow version 2.16\n"),
        image_output({"image/png": {"width": 480, "height": 320}}),
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["\x1b[0;31mValueError\x1b[0m: bad"]),
    ]
    page = render(nb)
    headings = {attrs.get("id") for tag, attrs in page.tags if tag in ("h1", "h2", "h3")}
    assert {"Imports", "Training"} <= headings
    assert ("img", {"src": f"data:image/png;base64,{PNG}", "width": "480", "height": "320", "alt": "No description has been provided for this image"}) in page.tags
    text = "".join(page.text)
    assert "In [3]:" in text.replace("\xa0", " ") and "Tensorflow version 2.16" in text and "ValueError: bad" in text
    assert any(tag == "span" and attrs.get("class") == "n" for tag, attrs in page.tags)  # highlighted code
    assert page.dangers() == []


def many_cells(count):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "markdown", "metadata": {}, "source": "x"} for _ in range(count)]}


def test_a_notebook_of_many_cells_runs_out_of_memory_and_reads_as_text(tmp_path):
    """60,000 markdown cells took 3.8 GB in the grader; here a 160 MiB budget is hit in seconds."""
    path = report.write_notebook(many_cells(60_000), str(tmp_path), "many", Budget(cpu_seconds=30, memory_mb=160))
    page = Elements(open(path, encoding="utf-8").read())
    assert "rendering needed more than its 160 MiB of memory" in "".join(page.text)
    assert "[... 59000 more cells not shown ...]" in "".join(page.text)


def test_quadratic_markdown_runs_out_of_cpu_time_and_reads_as_text(tmp_path):
    """`![` repeated renders in quadratic time (24,000 of them: 25 s); 12,000 need about 6 s, over a 1 s budget."""
    source = "![" * 12_000 + "<script>alert(1)</script>"
    path = report.write_notebook(notebook(nbformat.v4.new_markdown_cell(source)), str(tmp_path), "brackets", Budget(cpu_seconds=1, memory_mb=1024))
    html = open(path, encoding="utf-8").read()
    page = Elements(html)
    assert "rendering used up its 1 s of CPU time" in "".join(page.text)
    assert "<script>alert(1)</script>" in "".join(page.text) and page.find("script") == []


def test_plain_text_is_capped_and_says_why():
    rendering = render_notebook.plain(many_cells(1000), "a reason", limit=100)
    assert rendering.html is None and rendering.note.startswith("This notebook is shown as plain text: a reason.")
    assert len(rendering.cells) == 101 and rendering.cells[-1]["text"] == "[... 900 more cells not shown ...]"
    long = render_notebook.plain(notebook(nbformat.v4.new_markdown_cell("y" * 500)), "why", limit=100)
    assert long.cells[0]["text"] == "y" * 100 + "\n[... 400 more characters not shown ...]"
    assert render_notebook.plain({"cells": "not a list"}, "why").cells == ()
    assert len(render_notebook.plain(many_cells(5000), "why").cells) == render_notebook.MAX_PLAIN_CELLS + 1


@pytest.mark.parametrize("value, pixels", [(480, 480), ("480", 480), (" 12 ", 12), (30.7, 30), (0, None), (-5, None), (True, None),
                                           ("1 src=x", None), ("1e400", None), (10**9, None), ([1], None), (None, None)])
def test_image_sizes_are_positive_integers(value, pixels):
    assert render_notebook._pixels(value) == pixels


def test_a_renderer_server_renders_what_a_child_of_its_own_renders():
    nb = notebook(nbformat.v4.new_markdown_cell("# Title\n\n*some* `code` <b>raw</b>"), code_cell("print(1)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="1\n")]))
    payload = json.dumps(nb).encode()
    server = render_notebook._Server()
    try:
        status, served, _ = server.render(payload, Budget())
        again = server.render(payload, Budget())  # the server stays for the next notebook
    finally:
        server.stop()
    alone_status, alone, _ = render_notebook._render_alone(payload, Budget())
    assert status == alone_status == 0 and served == alone == again[1]
    assert b"<em>some</em>" in served and b"<b>" not in served


def test_a_renderer_server_that_died_is_replaced_and_the_page_still_rendered():
    server = render_notebook._SERVERS.take()
    server.process.kill()
    server.process.wait()
    assert server.render(b"{}", Budget()) is None  # it failed, and says so
    render_notebook._SERVERS.give_back(server)
    assert server not in render_notebook._SERVERS.idle
    assert render(notebook(nbformat.v4.new_markdown_cell("*still*"))).find("em")


def test_a_child_stuck_without_using_its_cpu_is_stopped_at_the_wall_clock_limit(monkeypatch):
    monkeypatch.setattr(render_notebook, "_child", lambda payload, out, err: time.sleep(60))
    status, out, _ = render_notebook._fork_child(b"{}", cpu_seconds=5, memory_mb=1 << 20, wall_seconds=0.5)
    assert status == render_notebook.WALL_EXIT and out == b""  # killed by the server, not waited for
