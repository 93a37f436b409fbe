"""grader serve: the web layer in process (fast), then real servers that grade (slow):
kill -9 mid-queue and a restart grade each upload once; a student in Chromium uploads,
watches, reads the scorecard while the projector page follows."""

import csv
import html
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, chromium
from grader.config import manifest as manifest_mod, notebook
from grader.reports import classview
from grader.serve import live, start, uploads, web
from grader.store import gradebook

TINY = os.path.join(ROOT, "tests", "fixtures", "tiny_assignment")
HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def tiny_notebook(answer: str = "answer = 42\nprint(answer)") -> bytes:
    import nbformat

    from grader.config import release

    _, playground = release.build(manifest_mod.load(TINY))
    for cell in playground.cells:
        if cell.get("id") == "answer":
            cell.source = answer
    return nbformat.writes(playground).encode()


# --- the web layer, in process (nothing graded) ----------------------------------------


@pytest.fixture
def site(tmp_path):
    """A server's web layer over a queue in tmp_path, without grading, in workshop mode."""
    from starlette.testclient import TestClient

    manifest = manifest_mod.load(TINY)
    queue = uploads.Queue(str(tmp_path))
    pages = live.Live(queue, str(tmp_path / "gradebook.sqlite"), classview.ClassFacts.of(manifest, "test"), 1)
    server = web.Server(manifest, web.ServerOptions(max_upload_mb=1, uploads_per_minute=2, code="ABC123"), queue, pages, None, False)
    with TestClient(server.app(), follow_redirects=False) as client:
        yield server, client


def csrf_of(text: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def join(client, name: str) -> str:
    """A new student's token."""
    form = client.get("/")
    response = client.post("/join", data={"csrf": csrf_of(form.text), "code": "abc-123", "name": name})
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def upload(client, token: str, data: bytes, name: str = "lab.ipynb", **extra):
    page = client.get(f"/s/{token}")
    fields = {"csrf": csrf_of(page.text), **extra.pop("fields", {})}
    return client.post(f"/s/{token}/upload", data=fields, files={"notebook": (name, data, "application/json")},
                       headers={"accept": "application/json", **extra.pop("headers", {})})


def test_every_response_carries_the_strict_headers(site):
    server, client = site
    admin = server.queue.issue_link("instructor", uploads.ADMIN)
    projector = server.queue.issue_link("projector", uploads.PROJECTOR)
    token = join(client, "Ada")
    upload(client, token, tiny_notebook())
    responses = [client.get(path) for path in (f"/p/{projector}", f"/p/{projector}/live",
        "/", f"/s/{token}", f"/s/{token}/live", f"/s/{token}/a/upload-1/scorecard.html", "/s/nope.nope", "/no/such/page",
        f"/a/{admin}", f"/a/{admin}/live", f"/a/{admin}/grades.csv", f"/a/{admin}/canvas.csv", "/healthz",
    )]
    responses += [client.post("/join", data={}), upload(client, token, b"not json")]
    for response in responses:
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, response.url
        assert "unsafe-inline" not in policy.split("script-src", 1)[-1].split(";")[0], response.url
    page = client.get(f"/s/{token}")
    script = re.search(r"<script>(.*?)</script>", page.text, re.S).group(1)
    assert script == web.SCRIPT and "script-src 'sha256-" in page.headers["content-security-policy"]
    meta = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page.text).group(1))
    assert "connect-src 'self'" in meta and "form-action 'self'" in meta


def test_joining_needs_the_code_and_the_forms_token(site):
    _, client = site
    form = client.get("/")
    assert client.post("/join", data={"code": "ABC123", "name": "Eve"}).status_code == 403  # no CSRF token
    wrong = client.post("/join", data={"csrf": csrf_of(form.text), "code": "ZZZ999", "name": "Eve"})
    assert wrong.status_code == 403 and "not the workshop's code" in html.unescape(wrong.text)
    assert join(client, "Ada Lovelace")


def test_a_student_who_lost_their_page_gets_it_back_by_joining_again_from_the_same_browser(site):
    from starlette.testclient import TestClient

    server, client = site
    first = join(client, "Zoe Zhang")
    again = join(client, "Zoe Zhang")  # the same browser (its join cookie), the same name: the same student, a new link
    assert server.queue.holder(again) == "zoe-zhang" and server.queue.holder(first) is None
    assert join(client, "Zoe  Zhang ") and server.queue.holder(join(client, "Zoe Zhang")) == "zoe-zhang"  # spaces as typed
    with TestClient(server.app(), follow_redirects=False) as other:  # another browser: never someone else's link
        assert server.queue.holder(join(other, "Zoe Zhang")) == "zoe-zhang-2"
    assert server.queue.holder(join(client, "Zed")) == "zed"  # the same browser, another name: another student


def test_a_refused_upload_is_on_the_instructors_page_with_the_students_file_and_why(site):
    server, client = site
    token = join(client, "Ada")
    admin = server.queue.issue_link("instructor", uploads.ADMIN)
    sent = upload(client, token, b"%PDF-1.7 my report", name="report <b>.pdf")
    assert sent.status_code == 422 and "the file is a PDF, not a notebook" in sent.json()["message"]
    page = client.get(f"/a/{admin}/live").text
    assert 'id="refused"' in page and "ada" in page and "report &lt;b&gt;.pdf" in page and "the file is a PDF" in html.unescape(page)
    assert "<b>" not in page.split('id="refused"')[1]  # the student's file name is text, never markup
    assert 'id="refused"' not in client.get(f"/s/{token}/live").text  # the instructor's alone


def test_a_forged_upload_form_is_refused(site):
    server, client = site
    token = join(client, "Ada")
    data = {"notebook": ("lab.ipynb", tiny_notebook(), "application/json")}
    forged = client.post(f"/s/{token}/upload", files=data, headers={"accept": "application/json"})
    assert forged.status_code == 403 and "not sent from this site" in forged.json()["message"]
    wrong = client.post(f"/s/{token}/upload", data={"csrf": "0" * 64}, files=data)
    assert wrong.status_code == 403
    other_site = upload(client, token, tiny_notebook(), headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"})
    assert other_site.status_code == 403
    assert server.queue.counts()["waiting"] == 0


def test_an_oversized_upload_and_a_non_notebook_are_refused_with_their_reasons(site, tmp_path):
    server, client = site
    token = join(client, "Ada")
    big = upload(client, token, b"{" + b" " * (3 * 2**20) + b"}")
    assert big.status_code == 413 and "MiB, over the 1 MiB limit; clear the outputs" in big.json()["message"]
    text = b"print('this is a script, not a notebook')\n"
    (tmp_path / "script.ipynb").write_bytes(text)
    with pytest.raises(notebook.Unreadable) as reason:
        notebook.read_submission(str(tmp_path / "script.ipynb"))
    refused = upload(client, token, text, name="script.ipynb")
    assert refused.status_code == 422 and refused.json()["message"] == f"script.ipynb was not queued: {reason.value}"
    assert server.queue.counts() == {"waiting": 0, "grading": 0, "done": 0, "failed": 0, "replaced": 0}
    assert [n for n in os.listdir(server.queue.folder)] == []  # no queue slot, no file kept


def test_a_file_name_with_dots_and_markup_is_only_text(site):
    server, client = site
    token = join(client, "Ada")
    name = "../../../<img src=x onerror=alert(1)>.ipynb"
    assert upload(client, token, tiny_notebook(), name=name).status_code == 200
    (stored,) = server.queue.of_student("ada")
    assert re.fullmatch(r"[0-9a-f]{32}\.ipynb", stored.stored) and os.listdir(server.queue.folder) == [stored.stored]
    assert stored.shown_name == name
    page = client.get(f"/s/{token}").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_another_students_token_gets_a_404_and_never_sees_a_token(site):
    server, client = site
    admin = server.queue.issue_link("instructor", uploads.ADMIN)
    ada, bob = join(client, "Ada"), join(client, "Bob")
    assert upload(client, ada, tiny_notebook()).status_code == 200
    for path in ("scorecard.html", "notebook.html", "result.json"):
        theirs = client.get(f"/s/{bob}/a/upload-1/{path}")
        assert theirs.status_code == 404 and theirs.text == client.get(f"/s/{bob}/a/upload-99/{path}").text
    pages = [client.get(p).text for p in (f"/s/{bob}", f"/s/{bob}/live", f"/a/{admin}", f"/a/{admin}/live", f"/a/{admin}/grades.csv", "/")]
    assert not any(ada in page or ada.split(".")[1] in page for page in pages)
    assert ada in client.get(f"/s/{ada}").text  # the curl line on their own page
    assert client.get("/s/" + ada.split(".")[0] + ".x" * 10).status_code == 404  # the right selector, a wrong verifier


# Each route with the role whose token opens it; "{t}" is the token, upload-1 is Ada's upload.
ROUTES = [
    ("GET", "/s/{t}", uploads.STUDENT), ("GET", "/s/{t}/live", uploads.STUDENT),
    ("GET", "/s/{t}/a/upload-1/result.json", uploads.STUDENT), ("POST", "/s/{t}/upload", uploads.STUDENT),
    ("BEARER", "/api/upload", uploads.STUDENT),
    ("GET", "/a/{t}", uploads.ADMIN), ("GET", "/a/{t}/live", uploads.ADMIN), ("GET", "/a/{t}/a/upload-1/result.json", uploads.ADMIN),
    ("GET", "/a/{t}/grades.csv", uploads.ADMIN), ("GET", "/a/{t}/canvas.csv", uploads.ADMIN),
    ("GET", "/p/{t}", uploads.PROJECTOR), ("GET", "/p/{t}/live", uploads.PROJECTOR),
]


def test_every_route_opens_to_its_own_roles_token_and_to_no_other(site):
    """The role × route matrix: a student's, the instructor's and the projector's tokens, a
    forged one (a real selector, a wrong verifier) and an empty one, on every route of the
    server; a route opens to its role's token alone, and every other token gets the same
    404 as a token that never existed."""
    from grader.serve import tokens

    server, client = site
    ada = join(client, "Ada")
    assert upload(client, ada, tiny_notebook()).status_code == 200  # upload-1, Ada's
    held = {uploads.STUDENT: ada, uploads.ADMIN: server.queue.issue_link("instructor", uploads.ADMIN),
            uploads.PROJECTOR: server.queue.issue_link("projector", uploads.PROJECTOR)}
    intruders = {"forged": ada.split(".")[0] + "." + "A" * 32, "nobody": "nope.nope"}
    files = {"notebook": ("lab.ipynb", tiny_notebook(), "application/json")}

    def call(method: str, path: str, token: str):
        url = path.replace("{t}", token)
        if method == "POST":
            csrf = tokens.form_token(server.secret, f"upload:{token.split('.')[0]}")  # the form's own token: only the link decides
            return client.post(url, data={"csrf": csrf}, files=files, headers={"accept": "application/json"})
        if method == "BEARER":
            return client.post(url, files=files, headers={"authorization": f"Bearer {token}"})
        return client.get(url)

    def refused(response) -> bool:
        text = response.text
        return response.status_code == 404 and "(yet)" not in text and ("no such page" in text or "no such student" in text)

    seen = []
    for method, path, role in ROUTES:
        for holder, token in {**held, **intruders}.items():
            server.upload_limit = web.RateLimit(1000, 60)  # the matrix uploads many times; the limit has its own test
            response = call(method, path, token)
            seen.append((method, path, holder, response.status_code))
            if holder == role:
                assert not refused(response), (method, path, holder, response.status_code, response.text[:200])
                assert response.status_code in (200, 303) or "(yet)" in response.text, (method, path, holder)
            else:
                assert refused(response), (method, path, holder, response.status_code, response.text[:200])
                assert token not in response.text and held[uploads.STUDENT] not in response.text
    assert len(seen) == len(ROUTES) * 5
    # Bob, a student too, cannot read Ada's upload with his own link
    bob = join(client, "Bob")
    assert refused(client.get(f"/s/{bob}/a/upload-1/result.json"))


def test_the_projector_shows_the_class_as_a_whole_and_no_one_in_it(site):
    """The page for the room: the join code, the counts, the distribution, what the class
    is stuck on by the checks' titles, each check's pass rate; no student's name or score,
    nothing a student wrote (a message can quote their code), no scorecard, no download.
    The instructor may opt in to names; a projector's link opens nothing else."""
    import dataclasses

    from grader.results import CheckResult, SubmissionResult

    server, client = site
    projector = server.queue.issue_link("projector", uploads.PROJECTOR)
    ada = join(client, "Ada Quietly")
    assert upload(client, ada, tiny_notebook()).status_code == 200
    (sent,) = server.queue.claim(1)
    said = "answer is <b>QUOTED_FROM_ADA</b>"
    facts = server.live.facts
    result = SubmissionResult(facts.name, facts.version, "ada-quietly", sent.stored, "0" * 64, "graded", 0.0, 10.0,
                              tuple(CheckResult(spec.id, spec.title, "failed", 0.0, spec.points, said) for spec in server.manifest.checks))
    book = gradebook.Gradebook(server.workshop_book)
    book.record(facts.name, gradebook.Stored(sent.student, sent.stored, "0" * 64, time.time(), "upload", True))
    book.put(facts.fingerprint, dataclasses.replace(result, submission=sent.student, file=sent.stored))
    book.close()
    server.queue.finish(sent, "done", "graded", 0.0, 10.0, "")
    server.live.changed()
    for path in (f"/p/{projector}", f"/p/{projector}/live"):
        page = client.get(path)
        assert page.status_code == 200, page.text
        text = html.unescape(page.text)
        assert "ABC123" in text or path.endswith("/live")  # the join code, on the page
        assert "QUOTED_FROM_ADA" not in text and "Ada" not in text and "ada" not in text.lower()
        assert "/a/" not in text and ".csv" not in text and ".zip" not in text and "scorecard" not in text
        assert all(spec.title in text for spec in server.manifest.checks) and 'id="distribution"' in text  # stuck on, by title
    # nothing else opens with a projector's link, and no other link opens the projector
    admin = server.queue.issue_link("instructor", uploads.ADMIN)
    for path in (f"/a/{projector}", f"/a/{projector}/grades.csv", f"/s/{projector}", f"/p/{admin}", f"/p/{ada}", f"/a/{projector}/a/{sent.name}/result.json",
                 f"/a/{ada}", f"/a/{ada}/grades.csv", f"/a/{ada}/live", f"/s/{admin}"):  # and a student's link is no instructor's
        assert client.get(path).status_code == 404, path
    server.settings = dataclasses.replace(server.settings, projector_names=True)
    server.live.changed()
    assert "ada-quietly" in client.get(f"/p/{projector}").text  # the instructor's choice


def test_live_parts_never_wait_for_the_class_view_but_a_page_shows_every_change_before_it(site, monkeypatch):
    """The class view is built in the live pages' own thread: while a build is slow, a live
    part is served at once from the last snapshot; a whole page waits for the snapshot
    that shows the change made before it (a join), and a view handed over by the grading
    thread is used as it is."""
    import threading

    server, client = site
    admin = server.queue.issue_link("instructor", uploads.ADMIN)
    ada = join(client, "Ada")
    assert client.get(f"/a/{admin}/live").status_code == 200  # a projector is watching
    # The snapshot that shows Ada's join may still be in the making: wait for it, so that the
    # version the parts are asked about is the last one made before the slow build.
    before = server.live.snapshot(fresh=True).version
    builds, release, threads = [], threading.Event(), set()
    real = classview.build

    def slow(book, facts):
        builds.append(1)
        threads.add(threading.current_thread().name)
        release.wait(30)
        return real(book, facts)

    monkeypatch.setattr(classview, "build", slow)
    bob = join(client, "Bob")  # the gradebook changed: the next snapshot builds a view, slowly
    assert client.get(f"/s/{ada}/live?v={before}").status_code == 204  # not held up by the build
    assert client.get(f"/a/{admin}/live?v={before}").status_code == 204
    shown = []
    opened = threading.Thread(target=lambda: shown.append(client.get(f"/s/{bob}").text))
    opened.start()
    opened.join(1.0)
    assert opened.is_alive() and not shown  # Bob's page waits for the snapshot that knows him
    release.set()
    opened.join(30)
    assert "Bob" in shown[0]
    assert threads == {"grader-live"} and len(builds) == 1
    assert server.live.version != before
    assert server._rendered["_admin_live.html.j2"][0][0] == server.live.version  # made before it was asked for

    handed = real(gradebook.Gradebook(server.workshop_book), server.live.facts)
    server.live.changed(handed)
    assert server.live.snapshot(fresh=True).view is handed and len(builds) == 1
    server.live.changed(book=False)  # only the queue changed: the last view still holds
    assert server.live.snapshot(fresh=True).view is handed and len(builds) == 1
    # A view the grading thread began before a join that has been shown since is older than
    # the page: the live pages keep the newer one (Cy stays on the projector).
    join(client, "Cy")
    assert server.live.snapshot(fresh=True).row("cy") is not None and len(builds) == 2
    server.live.changed(handed)
    assert server.live.snapshot(fresh=True).row("cy") is not None and len(builds) == 2


def test_tokens_are_stored_hashed(site):
    server, client = site
    token = join(client, "Ada")
    selector, verifier = token.split(".")
    raw = open(server.queue.path, "rb").read() + open(server.queue.path + "-wal", "rb").read()
    assert verifier.encode() not in raw and selector.encode() in raw


def test_a_newer_upload_replaces_the_waiting_one_and_the_rate_is_limited(site):
    server, client = site
    token = join(client, "Ada")
    first = upload(client, token, tiny_notebook(), name="first.ipynb")
    second = upload(client, token, tiny_notebook("answer = 1"), name="second.ipynb")
    assert "replaces first.ipynb" in second.json()["message"]
    assert [(u.shown_name, u.state) for u in server.queue.of_student("ada")] == [("second.ipynb", "waiting"), ("first.ipynb", "replaced")]
    assert len(os.listdir(server.queue.folder)) == 1
    third = upload(client, token, tiny_notebook("answer = 2"))
    assert first.status_code == 200 and third.status_code == 429 and int(third.headers["retry-after"]) > 0


def test_curl_uploads_with_the_bearer_token(site):
    server, client = site
    token = join(client, "Ada")
    line = re.search(r'<pre id="curl">(.*?)</pre>', client.get(f"/s/{token}").text).group(1)
    assert f"Bearer {token}" in line and line.endswith("/api/upload")
    files = {"notebook": ("lab.ipynb", tiny_notebook(), "application/json")}
    sent = client.post("/api/upload", files=files, headers={"authorization": f"Bearer {token}"})
    assert sent.status_code == 200 and "upload-1" in sent.text and f"/s/{token}" in sent.text
    assert client.post("/api/upload", files=files, headers={"authorization": "Bearer nope.nope"}).status_code == 404
    for wrong in (f"Basic {token}", token, f"Bearer{token}", f"Token {token}"):  # the right token, not as a bearer's
        assert client.post("/api/upload", files=files, headers={"authorization": wrong}).status_code == 404, wrong


def test_links_are_written_once_per_student_for_the_instructor(tmp_path):
    queue = uploads.Queue(str(tmp_path))
    students = {"s1": {"name": "Ada", "email": "ada@example.org"}, "s2": {"name": "=HYPERLINK(1)", "email": ""}}
    path = str(tmp_path / "links.csv")
    assert start.write_links(queue, students, "https://grader.example.org/", path) == 2
    assert os.stat(path).st_mode & 0o777 == 0o600
    rows = list(csv.DictReader(open(path)))
    assert [r["name"] for r in rows] == ["Ada", "'=HYPERLINK(1)"]
    assert b"\r" not in open(path, "rb").read()  # lines end as this machine's text files do
    assert all(queue.holder(r["link"].rsplit("/s/", 1)[1]) == r["student"] for r in rows)
    assert start.write_links(queue, students, "https://grader.example.org", path) == 0  # every student has one
    assert start.write_links(queue, students, "https://grader.example.org", path, renew={"s1"}) == 1
    assert queue.holder(rows[0]["link"].rsplit("/s/", 1)[1]) is None  # the old link stopped working


def test_the_queue_gives_back_what_a_killed_server_was_grading(tmp_path):
    queue = uploads.Queue(str(tmp_path))
    for student in ("a", "b", "c"):
        queue.add(student, "lab.ipynb", queue.incoming(tiny_notebook()))
    claimed = queue.claim(2)
    assert [u.student for u in claimed] == ["a", "b"] and queue.counts()["grading"] == 2
    again = uploads.Queue(str(tmp_path))  # the next start
    assert again.requeue_interrupted() == 2
    assert [u.student for u in again.claim(3)] == ["a", "b", "c"]  # they kept their places


def test_the_queue_grades_everyones_first_upload_before_anyones_second_and_says_so(tmp_path):
    """Fair under load: by round (how many of the student's uploads were graded before), then by age."""
    queue = uploads.Queue(str(tmp_path))

    def send(student: str) -> uploads.Upload:
        return queue.add(student, "lab.ipynb", queue.incoming(tiny_notebook(f"answer = {student!r}")))[0]

    def grade_next() -> None:
        [taken] = queue.claim(1)
        queue.finish(taken, uploads.DONE, "graded", 1.0, 1.0, "")

    send("ann"), grade_next(), send("ann"), grade_next(), send("cy"), grade_next()
    third, second, first = send("ann"), send("cy"), send("bob")  # ann's third came first, bob's first last
    assert [queue.round_of(u) for u in (third, second, first)] == [2, 1, 0]
    assert [u.id for u in queue.in_line()] == [first.id, second.id, third.id]
    assert [queue.ahead_of(u) for u in (first, second, third)] == [0, 1, 2]
    assert [u.id for u in queue.claim(1)] == [first.id]
    assert queue.ahead_of(third) == 2  # bob's, being graded, and cy's second
    assert [u.id for u in queue.claim(5)] == [second.id, third.id]


# --- real servers (slow) ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Running:
    """`grader serve` in a process group of its own; stop() ends it (and its workers)."""

    def __init__(self, assignment: str, out, roster=None, links=None, port=None, jobs: int = 1, extra=()):
        import httpx

        self.port = port or free_port()
        self.log_path = f"{out}-serve-{time.monotonic_ns()}.log"
        command = [sys.executable, "-u", "-m", "grader", "serve", assignment, "--out", str(out), "--port", str(self.port),
                   "--jobs", str(jobs), "--uploads-per-minute", "100"]
        command += ["--roster", str(roster), "--links", str(links)] if roster else []
        command += list(extra)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        deadline = time.monotonic() + 900  # the preflight grades two notebooks; a busy host is slow
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"the server did not start: {open(self.log_path).read()[-3000:]}")

    @property
    def log(self) -> str:
        return open(self.log_path).read()

    def counts(self) -> dict:
        return self.http.get("/healthz").json()

    def wait(self, done, seconds: float = 900) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            counts = self.counts()
            if done(counts):
                return counts
            assert counts["waiting"] or counts["grading"], f"the queue drained first: {counts}"
            time.sleep(0.1)
        raise AssertionError(f"waited {seconds} s: {self.counts()}")

    def kill(self) -> None:
        """kill -9 of the server process alone (its workers find their pipe closed)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever of its group is left (the workers of a killed server)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.http.close()


def roster_of(tmp_path, students) -> tuple[str, str]:
    roster, links = tmp_path / "roster.csv", tmp_path / "links.csv"
    with open(roster, "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "name", "email"], *[[s, f"Student {s}", ""] for s in students]])
    return roster, links


def tokens_in(links) -> dict[str, str]:
    return {row["student"]: row["link"].rsplit("/s/", 1)[1] for row in csv.DictReader(open(links))}


@pytest.mark.slow
def test_a_slow_notebook_holds_up_its_own_lane_and_no_one_else(tmp_path):
    """Two lanes: a notebook that takes long (here it sleeps) keeps one busy; an upload sent
    after it is graded in the other meanwhile, not after it."""
    import sqlite3

    roster, links = roster_of(tmp_path, ["slow", "quick"])
    server = Running(TINY, tmp_path / "out", roster, links, jobs=2)
    try:
        tokens = tokens_in(links)

        def send(student: str, answer: str) -> None:
            response = server.http.post("/api/upload", headers={"authorization": f"Bearer {tokens[student]}"},
                                        files={"notebook": ("lab.ipynb", tiny_notebook(answer), "application/json")})
            assert response.status_code == 200, response.text

        send("slow", "import time\ntime.sleep(25)\nanswer = 42")
        server.wait(lambda counts: counts["grading"] == 1)  # a lane has it
        send("quick", "answer = 42")
        server.wait(lambda counts: counts["done"] >= 1)
        with sqlite3.connect(tmp_path / "out" / "serve.sqlite") as db:
            states = dict(db.execute("SELECT student, state FROM uploads").fetchall())
        assert states == {"slow": "grading", "quick": "done"}, states
        server.wait(lambda counts: counts["done"] == 2, 300)
    finally:
        server.stop()


@pytest.mark.slow
def test_kill_9_mid_queue_then_a_restart_grades_each_upload_exactly_once(tmp_path):
    import sqlite3

    students = [f"s{n}" for n in range(12)]  # more than one take of the queue (8 with one worker)
    roster, links = roster_of(tmp_path, students)
    out = tmp_path / "served"
    server = Running(TINY, out, roster, links)
    try:
        tokens = tokens_in(links)
        for n, student in enumerate(students):  # six distinct notebooks, one of them wrong, each sent by two students
            answer = "answer = 1 / 0" if n % 6 == 3 else f"answer = {n % 6}\nprint(answer)"
            if n == 1:  # the second holds the one worker a while: the queue is mid-way however fast the machine
                answer = "import time\ntime.sleep(8)\n" + answer
            sent = server.http.post("/api/upload", headers={"authorization": f"Bearer {tokens[student]}"},
                                    files={"notebook": ("lab.ipynb", tiny_notebook(answer), "application/json")})
            assert sent.status_code == 200, sent.text
        server.wait(lambda c: c["done"] >= 1 and c["grading"] >= 1 and c["waiting"] >= 1)
        server.kill()
    finally:
        server.stop()
    port = server.port
    server = Running(TINY, out, port=port)  # no roster this time: the gradebook kept it, the queue the links
    try:
        counts = server.wait(lambda c: c["waiting"] == 0 and c["grading"] == 0)
        assert counts["done"] == len(students) and counts["failed"] == 0
        assert "graded now" in server.log  # it said it took back what it was grading
        db = sqlite3.connect(str(out / "serve.sqlite"))
        assert db.execute("SELECT student, applied, state FROM uploads ORDER BY id").fetchall() == [(s, 1, "done") for s in students]
        tokens = tokens_in(links)
        mine = server.http.get(f"/s/{tokens['s0']}/a/upload-1/scorecard.html")
        theirs = server.http.get(f"/s/{tokens['s1']}/a/upload-1/scorecard.html")
        assert mine.status_code == 200 and "s0" in mine.text and theirs.status_code == 404
        assert "lab.ipynb, submitted" in mine.text and "upload-1.ipynb" not in mine.text  # the student's own name for the file
        for response in (mine, theirs):  # a graded scorecard, as served, carries the strict headers too
            assert all(response.headers.get(name) == value for name, value in HEADERS.items())
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "script-src 'none'" in mine.headers["content-security-policy"]  # a scorecard runs no script
        for student, token in tokens.items():  # no page holds a token, its own student's or another's
            for name in ("scorecard.html", "notebook.html"):
                page = server.http.get(f"/s/{token}/a/upload-{students.index(student) + 1}/{name}")
                assert page.status_code == 200 and not any(t.split(".")[1] in page.text for t in tokens.values())
    finally:
        server.stop()
    graded = subprocess.run([sys.executable, "-m", "grader", "report", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert graded.returncode == 0, graded.stderr  # the batch's tools work on the server's gradebook
    table = list(csv.DictReader(open(out / "grades.csv")))
    assert {r["student"]: r["final"] for r in table} == {s: ("0.0" if s in ("s3", "s9") else "1.0") for s in students}


@pytest.mark.slow
def test_a_student_in_chromium_uploads_watches_and_reads_while_the_projector_follows(tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait as Wait

    def WebDriverWait(driver, timeout, poll_frequency):  # the live parts are replaced at each poll: an element may go stale
        return Wait(driver, timeout, poll_frequency=poll_frequency, ignored_exceptions=(StaleElementReferenceException,))

    driver = chromium(tmp_path / "chromium", "1200,1600", {"browser": "ALL"})
    roster, links = roster_of(tmp_path, ["ada", "bob"])
    server = Running(TINY, tmp_path / "served", roster, links)  # the same pages as the flowers lab's, graded in seconds
    try:
        admin = re.search(r"/a/(\S+)", server.log).group(1)
        base = f"http://127.0.0.1:{server.port}"
        driver.get(f"{base}/a/{admin}")
        projector = driver.current_window_handle
        driver.execute_script("window.notReloaded = true")
        WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: all(word in d.find_element(By.ID, "submissions").text for word in ("ada", "no upload")))
        driver.switch_to.new_window("tab")
        driver.get(f"{base}/s/{tokens_in(links)['ada']}")
        driver.execute_script("window.notReloaded = true")
        solution = os.path.join(server_out(tmp_path), ".grader", "reference-solution.ipynb")
        driver.find_element(By.ID, "file").send_keys(solution)
        driver.find_element(By.ID, "send").click()
        seen = set()

        def graded(d):
            state = d.find_element(By.ID, "state").get_attribute("data-state")
            seen.add(state)
            return state == "done"

        WebDriverWait(driver, 900, poll_frequency=0.2).until(graded)
        assert driver.execute_script("return window.notReloaded") is True  # the status changed in place
        assert "grading" in seen or "waiting" in seen
        assert "Received" in driver.find_element(By.ID, "message").text
        assert "1 / 1" in driver.find_element(By.ID, "state").text
        driver.find_element(By.ID, "scorecard-link").click()
        assert len(driver.find_elements(By.CSS_SELECTOR, "#checks tbody tr")) == 1
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]]
        assert errors == []
        driver.switch_to.window(projector)
        # The row's score can show a moment before the queue's count (the gradebook is
        # written first); the next poll brings both.
        WebDriverWait(driver, 30, poll_frequency=0.2).until(
            lambda d: "1 / 1" in d.find_element(By.ID, "submissions").text and d.find_element(By.ID, "count-done").text == "1")
        assert driver.execute_script("return window.notReloaded") is True
        shots = os.environ.get("GRADER_TEST_OUTPUT", os.path.join(ROOT, "test-output"))
        os.makedirs(shots, exist_ok=True)
        driver.save_screenshot(os.path.join(shots, "serve-projector.png"))
        # The room's own page, in the browser: the class as a whole, no name, no way to anyone's work
        room = re.search(r"/p/(\S+)", server.log).group(1)
        driver.switch_to.new_window("tab")
        driver.get(f"{base}/p/{room}")
        WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: d.find_element(By.ID, "count-graded").text == "1")
        shown = driver.find_element(By.TAG_NAME, "body").text
        assert "ada" not in shown.lower() and "bob" not in shown.lower()  # no names unless the instructor turns them on
        hrefs = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
        assert not any(part in href for href in hrefs for part in ("/a/", "/s/", ".csv", ".zip", "scorecard"))
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        driver.save_screenshot(os.path.join(shots, "serve-room.png"))
        driver.get(f"{base}/a/{room}")  # the projector's link opens no instructor's page
        assert "no such page" in driver.find_element(By.TAG_NAME, "body").text.lower()
    finally:
        server.stop()
        driver.quit()


def server_out(tmp_path) -> str:
    return str(tmp_path / "served")


def test_the_links_command_renews_a_students_link_and_the_instructors(tmp_path, capsys):
    from grader.cli import main
    from grader.reports import classreport
    from grader.store import gradebook

    manifest = manifest_mod.load(TINY)
    classreport.save_facts(classview.ClassFacts.of(manifest, "test"), str(tmp_path))
    book = gradebook.Gradebook(str(tmp_path / "gradebook.sqlite"))
    book.set_students(manifest.name, {"s1": {"name": "Ada"}, "s2": {"name": "Bob"}})
    book.close()
    queue = uploads.Queue(str(tmp_path))
    old = queue.issue_link("s1")
    links = str(tmp_path / "links.csv")
    assert main(["links", str(tmp_path), "--url", "https://grader.example.org", "--file", links]) == 0
    assert [r["student"] for r in csv.DictReader(open(links))] == ["s2"]  # only who had none
    assert main(["links", str(tmp_path), "--url", "https://grader.example.org", "--file", links, "--student", "s1"]) == 0
    (row,) = csv.DictReader(open(links))
    assert queue.holder(old) is None and queue.holder(row["link"].rsplit("/s/", 1)[1]) == "s1"
    assert main(["links", str(tmp_path), "--url", "https://grader.example.org", "--admin"]) == 0
    admin = re.search(r"/a/(\S+)", capsys.readouterr().out).group(1)
    assert queue.holder(admin, uploads.ADMIN) == "instructor"
    assert main(["links", str(tmp_path), "--url", "https://x", "--student", "nobody"]) == 2


def test_an_upload_after_the_deadline_is_taken_and_said_late(tmp_path):
    import shutil

    from starlette.testclient import TestClient

    assignment = tmp_path / "tiny"
    shutil.copytree(TINY, assignment)
    with open(assignment / "assignment.toml", "a") as toml:
        toml.write('\n[class]\ndue = "2020-01-01T00:00:00+00:00"\nlate_penalty_per_day = 0.1\n')
    manifest = manifest_mod.load(str(assignment))
    queue = uploads.Queue(str(tmp_path / "out"))
    pages = live.Live(queue, str(tmp_path / "out" / "gradebook.sqlite"), classview.ClassFacts.of(manifest, "test"), 1)
    server = web.Server(manifest, web.ServerOptions(code="ABC123"), queue, pages, None, False)
    with TestClient(server.app(), follow_redirects=False) as client:
        token = join(client, "Ada")
        assert "due 2020-01-01 00:00 UTC" in client.get(f"/s/{token}").text
        sent = upload(client, token, tiny_notebook())
    assert sent.status_code == 200 and "after the deadline (2020-01-01 00:00 UTC): the late policy applies" in sent.json()["message"]

