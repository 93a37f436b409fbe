"""`grader serve`: the workshop server, a thin web layer over the durable queue
(grader/serve/uploads.py), the links (grader/serve/tokens.py), the grading (grader/serve/workshop.py) and
what the live pages show (grader/serve/live.py).

    GET  /                           join with the workshop code and a name (no roster)
    POST /join                       -> a personal link (303 to /s/TOKEN)
    GET  /s/TOKEN                    a student's page: upload form, live status, uploads, curl line
    GET  /s/TOKEN/live?v=VERSION     its live part (204: nothing changed since VERSION)
    POST /s/TOKEN/upload             the form's upload (its CSRF token required)
    POST /api/upload                 an upload from curl (Authorization: Bearer TOKEN)
    GET  /s/TOKEN/a/upload-N/FILE    the student's own scorecard.html, notebook.html, result.json
    GET  /a/ADMIN                    the instructor's (projector) page; /live, /a/upload-N/FILE as above
    GET  /a/ADMIN/grades.csv, /canvas.csv
    GET  /p/PROJECTOR                the projector's page: the join code and the class as a whole, no
                                     names (unless --projector-names), no scorecards, no downloads; /live
    GET  /lti/jwks, /lti/login; POST /lti/launch   with --lti: launched from a course's LMS (grader/serve/lti.py)

A token that is not a student's, or an upload that is not theirs, is a 404, like a
page that does not exist. Every response carries strict headers (`SecurityHeaders`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
import threading
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from grader.config import notebook
from grader.config.manifest import Manifest
from grader.faults import GraderError
from grader.results import SubmissionResult
from grader.reports import classreport, exports, report, visibility
from grader.serve import live, lti, secure, tokens, uploads
from grader.serve.ratelimit import RateLimit
from grader.serve.workshop import Workshop
from grader.store import gradebook

log = logging.getLogger(__name__)
ADMIN_PART = "_admin_live.html.j2"  # the instructor's live part: the same for every instructor's page
PROJECTOR_PART = "_projector_live.html.j2"  # the projector's: the same for every projector
PROJECTOR_WATCHING = 300.0  # seconds after a projector last asked that its part is still made ahead
SCRIPT = report.template_text("live.js")  # the only script of the server's pages, allowed by its hash
FORM_SLACK = 64 * 1024  # bytes of a multipart body besides the file (boundaries, headers, the CSRF field)
DRAIN_FACTOR = 4  # an oversized body is read (and dropped) up to this many times the cap, so the client reads the refusal
JOIN_COOKIE = "grader_join"
LTI_STUDENT_COOKIE = "grader_lti_student"  # who launched from the course in this browser: their scorecards' links open
LTI_STUDENT_DAYS = 30
REFUSALS_SHOWN = 30  # the students' refused uploads the instructor's page lists (the latest; kept in memory)


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """What `grader serve` takes besides the grading options (see `grader serve --help`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    url: str = ""  # the address students use (behind a proxy: its https URL); default http://HOST:PORT
    max_upload_mb: float = 20.0
    uploads_per_minute: int = 4  # per student
    code: str = ""  # the workshop code (no roster); "": made at the first start and kept
    links: str | None = None  # write the links of students who have none to this CSV at start
    trusted_proxies: str = ""  # whose X-Forwarded-For / -Proto uvicorn believes (comma-separated; "": nobody's)
    projector_names: bool = False  # the projector's page names the students who just finished, with their scores
    lti: str = ""  # the LTI registration (a TOML file): launched from a course's LMS, scores posted back ("": none)

    @property
    def public_url(self) -> str:
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class Declined(Exception):
    """An upload or form refused: the HTTP status and the reason shown to the student."""

    def __init__(self, status: int, message: str, retry_after: float = 0, file: str = ""):
        super().__init__(message)
        self.status, self.message, self.retry_after, self.file = status, message, retry_after, file  # file: as its student named it


def from_the_course() -> Declined:
    """Why a server launched from an LMS has no join form: the LMS says who a student is."""
    return Declined(404, "this lab opens from your course: follow its link there (no code is needed)")


# --- the app -------------------------------------------------------------------------


class Server:
    """The routes' shared state: queue, live snapshots, grading, secrets and limits."""

    def __init__(self, manifest: Manifest, settings: ServerOptions, queue: uploads.Queue, live_pages: live.Live, workshop: Workshop | None,
                 roster_mode: bool, tool: lti.Tool | None = None):
        self.manifest, self.settings, self.queue, self.live, self.workshop = manifest, settings, queue, live_pages, workshop
        self.tool = tool  # the LTI tool (None: not launched from an LMS)
        self.on_roster = None  # with a tool: called with the course's members URL at a staff launch (the roster is read then)
        self.roster_mode = roster_mode
        self.secret = queue.setting("csrf_secret", tokens.new_secret)
        self.code = "" if roster_mode else queue.setting("workshop_code", lambda: settings.code or tokens.workshop_code())
        self.upload_limit = RateLimit(settings.uploads_per_minute, 60)
        self.join_limit = RateLimit(20, 60)  # per client address: joins and wrong codes
        self.refusals: collections.deque = collections.deque(maxlen=REFUSALS_SHOWN)  # students' uploads refused, newest first
        self._register = threading.Lock()
        self._rendered: dict[str, tuple] = {}  # the projector's live part, by template: ((version, base), text)
        self._projector = ("", 0.0)  # the admin live part's base, when it was last asked for
        self._reference = None  # the lab's solution's result, for the curves of a scorecard rendered here
        self._published: tuple = (None, -10.0)  # when the grades were published (None: not), when that was read
        live_pages.on_snapshot(self._prerender)

    def app(self) -> "secure.SecurityHeaders":
        routes = [
            Route("/", self.home), Route("/join", self.join, methods=["POST"]),
            Route("/s/{token}", self.student), Route("/s/{token}/live", self.student_live),
            Route("/s/{token}/upload", self.form_upload, methods=["POST"]), Route("/api/upload", self.api_upload, methods=["POST"]),
            Route("/s/{token}/a/{name}/{file}", self.student_file),
            Route("/a/{token}", self.admin), Route("/a/{token}/live", self.admin_live),
            Route("/a/{token}/a/{name}/{file}", self.admin_file),
            Route("/a/{token}/grades.csv", self.grades), Route("/a/{token}/canvas.csv", self.canvas),
            Route("/p/{token}", self.projector), Route("/p/{token}/live", self.projector_live),
            Route("/healthz", self.health),
        ]
        if self.tool is not None:
            routes += [Route("/lti/jwks", self.lti_jwks), Route("/lti/login", self.lti_login, methods=["GET", "POST"]),
                       Route("/lti/launch", self.lti_launch, methods=["POST"]), Route("/lti/scorecard/{name}", self.lti_scorecard)]
        return secure.SecurityHeaders(Starlette(routes=routes))

    # --- joining ---------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        if self.tool is not None:
            return self._message(from_the_course())
        return self._join_page(request)

    def _join_page(self, request: Request, refused: Declined | None = None) -> Response:
        """The join form, its CSRF token made from the browser's nonce cookie (set if missing)."""
        nonce = request.cookies.get(JOIN_COOKIE) or tokens.new_secret()[:32]
        response = self._page("join.html.j2", status=refused.status if refused else 200, title=self.manifest.title,
                              roster_mode=self.roster_mode, csrf=tokens.form_token(self.secret, f"join:{nonce}"),
                              error=refused.message if refused else "")
        # kept a day (a workshop's length): a student who closed the browser can still join again as themselves
        response.set_cookie(JOIN_COOKIE, nonce, max_age=86400, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    async def join(self, request: Request) -> Response:
        try:
            _same_site(request)
            if self.tool is not None:  # a student is who the LMS says: no one names themselves into the class
                raise from_the_course()
            if self.roster_mode:
                raise Declined(404, "this workshop uses personal links: open the link your instructor sent you")
            form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
            nonce = request.cookies.get(JOIN_COOKIE, "")
            if not nonce or not tokens.form_token_ok(self.secret, f"join:{nonce}", str(form.get("csrf", ""))):
                raise Declined(403, "the form is out of date or was not sent from this site: reload the page and try again")
            wait = self.join_limit.wait(request.client.host if request.client else "")
            if wait:
                raise Declined(429, f"too many tries from here: wait {wait:.0f} s", wait)
            if not tokens.same_code(self.code, str(form.get("code", ""))):
                raise Declined(403, "that is not the workshop's code: it is on the instructor's screen")
            name = " ".join(str(form.get("name", "")).split())
            if not 0 < len(name) <= 60 or not name.isprintable():
                raise Declined(400, "give a name of 1 to 60 characters: the instructor sees it beside your score")
        except Declined as refused:
            return self._join_page(request, refused)
        token = await run_in_threadpool(self._join, name, nonce)
        return RedirectResponse(f"/s/{token}", status_code=303)

    def _join(self, name: str, nonce: str = "") -> str:
        """The workshop's student named `name` who joined from this browser (its join cookie's
        `nonce`), with a new link (their old one stops working): a student who lost their page
        gets it back by joining again. Anyone else is a new student, whatever their name, so
        that no one takes over another's link. Returns the token."""
        browser = tokens.form_token(self.secret, f"browser:{nonce}") if nonce else ""
        with self._register:
            book = gradebook.Gradebook(self.workshop_book)
            try:
                students = book.students(self.manifest.name)
                again = next((s for s, fields in students.items() if browser and fields.get("browser") == browser
                              and fields.get("name") == name), None)
                if again is not None:
                    return self.queue.issue_link(again)
                base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "student"
                student, n = base, 2
                while student in students:
                    student, n = f"{base}-{n}", n + 1
                book.add_student(self.manifest.name, student, {"name": name, "browser": browser})
            finally:
                book.close()
        self.live.changed()
        return self.queue.issue_link(student)

    @property
    def workshop_book(self) -> str:
        return os.path.join(self.queue.out_dir, "gradebook.sqlite")

    # --- launched from an LMS (LTI 1.3) ----------------------------------------------------

    async def lti_jwks(self, request: Request) -> Response:
        return JSONResponse(lti.public_jwks(self.tool.key))

    async def lti_login(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            form = await request.form(max_files=0, max_fields=16, max_part_size=4096)
            params.update({k: str(v) for k, v in form.items()})
        try:
            where, state = self.tool.login(params, f"{self.settings.public_url}/lti/launch")
        except lti.LaunchRefused as refused:
            return self._message(Declined(403, f"the launch was refused: {refused}"))
        response = RedirectResponse(where, status_code=302)
        secure_cookie = request.url.scheme == "https" or self.settings.public_url.startswith("https:")
        # the LMS posts the launch from its own site: only a SameSite=None cookie comes with it (https only)
        response.set_cookie(lti.STATE_COOKIE, state, max_age=lti.LOGIN_SECONDS, httponly=True, path="/lti/",
                            samesite="none" if secure_cookie else "lax", secure=secure_cookie)
        return response

    async def lti_launch(self, request: Request) -> Response:
        """A verified launch: a learner to their own page, staff to the instructor's."""
        try:
            form = await request.form(max_files=0, max_fields=8, max_part_size=64 * 1024)
            launch = await run_in_threadpool(self.tool.launch, str(form.get("id_token", "")), str(form.get("state", "")),
                                             request.cookies.get(lti.STATE_COOKIE))
            if not launch.staff and not launch.learner:
                raise lti.LaunchRefused("the course gives you no role this lab has a page for (learner or instructor)")
            where, student = await run_in_threadpool(self._launched, launch)
        except lti.LaunchRefused as refused:
            return self._message(Declined(403, f"the launch was refused: {refused}. Launch the lab again from the course."))
        response = RedirectResponse(where, status_code=303)
        response.delete_cookie(lti.STATE_COOKIE, path="/lti/")
        if student:
            response.set_cookie(LTI_STUDENT_COOKIE, f"{student}.{tokens.form_token(self.secret, f'lti-student:{student}')}",
                                max_age=LTI_STUDENT_DAYS * 86400, httponly=True, path="/lti/", samesite="lax",
                                secure=self.settings.public_url.startswith("https:"))
        return response

    def _launched(self, launch: lti.Launch) -> tuple[str, str]:
        """Keep what the launch says of the course: (the page its user lands on, the student, "" for staff)."""
        lti.remember(self.workshop_book, self.manifest.name, launch)  # refuses a launch from another course
        with self._register:
            book = gradebook.Gradebook(self.workshop_book)
            try:
                if launch.staff:
                    lti.update_roles(book, self.manifest.name, launch.user_id, launch.roles)  # never posted from now on
                    student = ""
                else:
                    student = lti.add_learner(book, self.manifest.name, self.tool.registration.issuer, launch.user_id,
                                              launch.name, launch.email, launch.roles)
            finally:
                book.close()
        self.live.changed()
        if launch.staff:
            if launch.memberships and self.on_roster is not None:
                self.on_roster(launch.memberships)
            return f"/a/{self.queue.issue_link(f'lti:{launch.user_id}', uploads.ADMIN)}", ""
        return f"/s/{self.queue.issue_link(student)}", student

    async def lti_scorecard(self, request: Request) -> Response:
        """A scorecard, from the link in the course's gradebook: open to the browser of the student who launched."""
        try:
            student, _, mac = request.cookies.get(LTI_STUDENT_COOKIE, "").rpartition(".")
            if not student or not tokens.form_token_ok(self.secret, f"lti-student:{student}", mac):
                raise Declined(404, "open the lab from the course first, in this browser; then this link shows your scorecard")
            upload = self.queue.by_name(request.path_params["name"])
            if upload is None or upload.student != student:
                raise Declined(404, "no such page")
            return await self._attempt_file(upload, "scorecard.html", for_student=True)
        except Declined as refused:
            return self._message(refused)

    # --- a student's pages -----------------------------------------------------------

    def _student_of(self, request: Request) -> tuple[str, str]:
        token = request.path_params["token"]
        student = self.queue.holder(token)
        if student is None:
            raise Declined(404, "no such page: open the link your instructor gave you")
        return student, token

    async def student(self, request: Request) -> Response:
        try:
            student, token = self._student_of(request)
        except Declined as refused:
            return self._message(refused)
        snapshot = await run_in_threadpool(self.live.snapshot, True)
        view = await run_in_threadpool(self._view_now, snapshot)
        row = snapshot.row(student)
        selector = tokens.split(token)[0]
        due = row.due if row is not None else self.manifest.rules.due  # the student's own, with an extension
        return self._page(
            "student.html.j2", live=True, scripts=(SCRIPT,), script=SCRIPT, title=self.manifest.title,
            who=(row.name if row and row.name else student), student=student, base=f"/s/{token}",
            csrf=tokens.form_token(self.secret, f"upload:{selector}"), max_mb=f"{self.settings.max_upload_mb:g}",
            max_bytes=self.settings.max_upload_bytes, due=classreport.when(due) if due else "",
            curl=self.curl_line(token), version=snapshot.version,
            **live.student_page(snapshot, self.queue, student, self.jobs, view),
        )

    async def student_live(self, request: Request) -> Response:
        try:
            student, token = self._student_of(request)
        except Declined as refused:
            return self._message(refused)
        return await self._live_part(request, "_student_live.html.j2", base=f"/s/{token}",
                                     part=lambda snapshot: live.student_page(snapshot, self.queue, student, self.jobs, self._view_now(snapshot)))

    async def student_file(self, request: Request) -> Response:
        try:
            student, _ = self._student_of(request)
            upload = self.queue.by_name(request.path_params["name"])
            if upload is None or upload.student != student:
                raise Declined(404, "no such page")
            return await self._attempt_file(upload, request.path_params["file"], for_student=True)
        except Declined as refused:
            return self._message(refused)

    def _as_student_sees_it(self, snapshot: live.Snapshot, upload: uploads.Upload, name: str, path: str) -> str:
        """An upload's scorecard.html or result.json as its student may see it now: the checks
        held back (grader/reports/visibility.py) left out, the grades' publication read fresh."""
        row = snapshot.row(upload.student)
        attempt = next(a for a in row.attempts if a.stored.path == f"{upload.name}.ipynb")
        held = visibility.of_row(self._view_now(snapshot), row, time.time())
        found = attempt.result
        if found is None:  # the grader's own failure (kept nowhere else), or a result the snapshot does not hold yet
            with open(os.path.join(os.path.dirname(path), "result.json")) as handle:
                found = SubmissionResult.from_json(json.load(handle))
        result = dataclasses.replace(found, submission=row.student, file=upload.shown_name)
        if name == "result.json":
            return visibility.student_json(result, held)
        if self._reference is None:
            self._reference = report.load_reference(self.queue.out_dir)
        return visibility.scorecard(result, os.path.dirname(path), self._reference, classreport.about(row, attempt), held)

    def _view_now(self, snapshot: live.Snapshot):
        """The snapshot's class view, with whether the grades are published as the gradebook
        says now (`grader publish` runs beside the server); read at most once a second."""
        if not visibility.restricted(snapshot.view.rules, snapshot.view.check_ids):
            return snapshot.view
        published, read_at = self._published
        if time.monotonic() - read_at > 1.0:
            book = gradebook.Gradebook(self.live.book_path)
            try:
                published = book.published(self.manifest.name)
            finally:
                book.close()
            self._published = (published, time.monotonic())
            if published != snapshot.view.published:
                self.live.changed()  # the next snapshot (and the projector's part) reads the gradebook again
        return dataclasses.replace(snapshot.view, published=published)

    def curl_line(self, token: str) -> str:
        return (f'curl -sS -H "Authorization: Bearer {token}" -F "notebook=@{self.manifest.name}.ipynb" '
                f"{self.settings.public_url}/api/upload")

    @property
    def jobs(self) -> int:
        return self.workshop.jobs if self.workshop else 1

    # --- uploads ---------------------------------------------------------------------

    async def form_upload(self, request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        student = None
        try:
            _same_site(request)
            student, token = self._student_of(request)
            form = await self._read_form(request, student)
            if not tokens.form_token_ok(self.secret, f"upload:{tokens.split(token)[0]}", str(form.get("csrf", ""))):
                raise Declined(403, "the form is out of date or was not sent from this site: reload the page and upload again")
            message, _ = await self._accept(student, form)
        except Declined as refused:
            self._refused(student, refused)
            if wants_json:
                return _json_refusal(refused)
            return self._message(refused, back=request.url.path.rsplit("/", 1)[0])
        if wants_json:
            return JSONResponse({"ok": True, "message": message})
        return RedirectResponse(f"/s/{token}", status_code=303)

    async def api_upload(self, request: Request) -> Response:
        """The curl line's upload: the token in the Authorization header (not a form a
        browser would send on its own, so no CSRF token), the answer as plain text."""
        student = None
        try:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            student = self.queue.holder(token.strip()) if scheme.lower() == "bearer" else None
            if student is None:
                raise Declined(404, 'no such student: copy the curl line from your page, with its "Authorization: Bearer" token')
            form = await self._read_form(request, student)
            message, _ = await self._accept(student, form)
        except Declined as refused:
            self._refused(student, refused)
            headers = {"retry-after": f"{refused.retry_after:.0f}"} if refused.retry_after else None
            return PlainTextResponse(f"refused: {refused.message}\n", status_code=refused.status, headers=headers)
        return PlainTextResponse(f"{message}\nyour page: {self.settings.public_url}/s/{token.strip()}\n")

    def _refused(self, student: str | None, refused: Declined) -> None:
        """A known student's upload refused: kept for the instructor's page (the latest few),
        which is told to change."""
        if student is None:
            return
        self.refusals.appendleft({"at": time.time(), "student": student, "file": refused.file, "reason": refused.message})
        self.live.changed(book=False)

    async def _read_form(self, request: Request, student: str):
        """The multipart form, its size capped while it arrives; one upload a student per
        rate-limit window (refusals count too, so none can be used to hammer the server)."""
        wait = self.upload_limit.wait(student)
        if wait:
            raise Declined(429, f"you uploaded {self.settings.uploads_per_minute} times in the last minute: wait {wait:.0f} s", wait)
        cap = self.settings.max_upload_bytes
        limit, received = cap + FORM_SLACK, 0
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _drain(request.receive, DRAIN_FACTOR * cap)
            raise Declined(413, notebook.too_large(int(declared) - FORM_SLACK, cap))

        async def receive():
            nonlocal received
            message = await request.receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise Declined(413, notebook.too_large(received, cap))
            return message

        try:
            return await Request(request.scope, receive).form(max_files=1, max_fields=4, max_part_size=FORM_SLACK)
        except Declined:  # too large: what is left of it is read and dropped, up to a bound
            await _drain(request.receive, DRAIN_FACTOR * cap)
            raise
        except Exception as error:  # noqa: BLE001 - a malformed body (python-multipart's own errors)
            raise Declined(400, f"the upload is not a form with a notebook file ({error})") from None

    async def _accept(self, student: str, form) -> tuple[str, uploads.Upload]:
        chosen = form.get("notebook")
        if not isinstance(chosen, UploadFile):
            raise Declined(400, "choose your notebook file (.ipynb) first")
        data = await chosen.read()
        if len(data) > self.settings.max_upload_bytes:
            raise Declined(413, notebook.too_large(len(data), self.settings.max_upload_bytes))
        shown = _shown_name(chosen.filename or "notebook.ipynb")
        upload, replaced, refusal = await run_in_threadpool(self._store, student, shown, data)
        if refusal:
            raise Declined(422, f"{shown} was not queued: {refusal}", file=shown)
        if self.workshop is not None:
            self.workshop.wake()
        self.live.changed(book=False)  # queued: the gradebook has it once it is claimed
        ahead = self.queue.ahead_of(upload)
        said = [f"Received {shown} ({upload.name}): {ahead} upload(s) ahead of yours."]
        if replaced:
            said.append(f"It replaces {', '.join(u.shown_name for u in replaced)}, which was still waiting.")
        due = self.manifest.rules.due
        if due is not None and upload.submitted_at > due:
            said.append(f"It came after the deadline ({classreport.when(due)}): the late policy applies.")
        return " ".join(said), upload

    def _store(self, student: str, shown: str, data: bytes):
        """Check that `data` is a notebook (the reason a scorecard would give if not), then
        queue it durably. Returns (upload, the uploads it replaced, "") or (None, [], why)."""
        path = self.queue.incoming(data)
        try:
            notebook.read_submission(path, self.settings.max_upload_bytes)
        except notebook.Unreadable as error:
            os.unlink(path)
            return None, [], str(error)
        except BaseException:
            os.unlink(path)
            raise
        upload, replaced = self.queue.add(student, shown, path)
        return upload, replaced, ""

    # --- the instructor's pages ------------------------------------------------------

    def _admin(self, request: Request) -> None:
        if self.queue.holder(request.path_params["token"], uploads.ADMIN) is None:
            raise Declined(404, "no such page")

    async def admin(self, request: Request) -> Response:
        try:
            self._admin(request)
        except Declined as refused:
            return self._message(refused)
        snapshot = await run_in_threadpool(self.live.snapshot, True)
        base = request.url.path
        return self._page(
            "admin.html.j2", live=True, scripts=(SCRIPT,), script=SCRIPT, title=self.manifest.title, base=base,
            join=self.settings.public_url + "/", code=self.code, roster_mode=self.roster_mode, version=snapshot.version,
            problem=self.workshop.problem if self.workshop else "", refusals=list(self.refusals), **live.admin_page(snapshot),
        )

    async def admin_live(self, request: Request) -> Response:
        try:
            self._admin(request)
        except Declined as refused:
            return self._message(refused)
        self._projector = (request.url.path.rsplit("/", 1)[0], time.monotonic())
        return await self._live_part(request, ADMIN_PART, base=self._projector[0], part=live.admin_page)

    def _projector_holder(self, request: Request) -> None:
        if self.queue.holder(request.path_params["token"], uploads.PROJECTOR) is None:
            raise Declined(404, "no such page")

    def _projector_part(self, snapshot: live.Snapshot) -> dict:
        return live.projector_page(snapshot, self.settings.projector_names)

    async def projector(self, request: Request) -> Response:
        """The page for the room: join address and code, and the class as a whole."""
        try:
            self._projector_holder(request)
        except Declined as refused:
            return self._message(refused)
        snapshot = await run_in_threadpool(self.live.snapshot, True)
        return self._page(
            "projector.html.j2", live=True, scripts=(SCRIPT,), script=SCRIPT, title=self.manifest.title, base=request.url.path,
            join=self.settings.public_url + "/", code=self.code, roster_mode=self.roster_mode, version=snapshot.version,
            **self._projector_part(snapshot),
        )

    async def projector_live(self, request: Request) -> Response:
        try:
            self._projector_holder(request)
        except Declined as refused:
            return self._message(refused)
        await run_in_threadpool(lambda: self._view_now(self.live.snapshot()))  # a publication just made shows
        return await self._live_part(request, PROJECTOR_PART, part=self._projector_part)

    async def admin_file(self, request: Request) -> Response:
        try:
            self._admin(request)
            upload = self.queue.by_name(request.path_params["name"])
            if upload is None:
                raise Declined(404, "no such page")
            return await self._attempt_file(upload, request.path_params["file"])
        except Declined as refused:
            return self._message(refused)

    async def grades(self, request: Request) -> Response:
        return await self._download(request, "grades.csv", "text/csv", lambda view: classreport.grades_csv(view))

    async def canvas(self, request: Request) -> Response:
        return await self._download(request, "canvas.csv", "text/csv", lambda view: exports.canvas_csv(view, view.title)[0])

    async def _download(self, request: Request, name: str, kind: str, make) -> Response:
        try:
            self._admin(request)
            snapshot = await run_in_threadpool(self.live.snapshot, True)
            body = await run_in_threadpool(make, snapshot.view)
        except Declined as refused:
            return self._message(refused)
        except GraderError as error:
            return self._message(Declined(409, str(error)))
        filename = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.manifest.name)}-{name}"
        return Response(body, media_type=kind, headers={"content-disposition": f'attachment; filename="{filename}"'})

    async def health(self, request: Request) -> Response:
        counts = self.queue.counts()
        return JSONResponse({"grading": not (self.workshop and self.workshop.problem), **counts})

    # --- shared ----------------------------------------------------------------------

    async def _live_part(self, request: Request, template: str, part, **context) -> Response:
        """A live part, or 204 if the page's version (?v=) is the current one. Made in a
        worker thread from the last snapshot; the projector's part is made once per
        version for every projector, usually before it is asked for (`_prerender`)."""
        if request.query_params.get("v") == self.live.version:
            return Response(status_code=204)

        def render() -> tuple[str, str]:
            snapshot = self.live.snapshot()
            return snapshot.version, self._part(template, snapshot, part, context)

        version, text = await run_in_threadpool(render)
        return HTMLResponse(text, headers={"x-version": version, "content-security-policy": secure.STRICT})

    def _part(self, template: str, snapshot: live.Snapshot, part, context: dict) -> str:
        shared = template in (ADMIN_PART, PROJECTOR_PART)
        key = (snapshot.version, context.get("base"))
        cached = self._rendered.get(template) if shared else None
        if cached is not None and cached[0] == key:
            return cached[1]
        if template == ADMIN_PART:
            context = {**context, "problem": self.workshop.problem if self.workshop else "", "refusals": list(self.refusals)}
        text = report.fragment(template, version=snapshot.version, **context, **part(snapshot))
        if shared:
            self._rendered[template] = (key, text)
        return text

    def _prerender(self, snapshot: live.Snapshot) -> None:
        """The projector's part of a new snapshot, made before the snapshot is shown (in its
        thread, not a request's), while a projector has asked in the last minutes."""
        base, asked = self._projector
        if base and time.monotonic() - asked < PROJECTOR_WATCHING:
            self._part(ADMIN_PART, snapshot, live.admin_page, {"base": base})

    async def _attempt_file(self, upload: uploads.Upload, name: str, for_student: bool = False) -> Response:
        snapshot = await run_in_threadpool(self.live.snapshot)
        path = live.attempt_file(self.queue.out_dir, snapshot, upload, name)
        if path is None:
            raise Declined(404, "no such page (yet): its scorecard is written once it is graded")
        if for_student and name != "notebook.html" and visibility.restricted(snapshot.view.rules, snapshot.view.check_ids):
            body = (await run_in_threadpool(self._as_student_sees_it, snapshot, upload, name, path)).encode()
        else:
            with open(path, "rb") as handle:
                body = handle.read()
        if name.endswith(".json"):
            return Response(body, media_type="application/json")
        # The page's own <meta> policy is the batch's; the header adds what only a header can say.
        return Response(body, media_type="text/html; charset=utf-8",
                        headers={"content-security-policy": report.content_security_policy() + "; frame-ancestors 'none'"})

    def _page(self, template: str, status: int = 200, live: bool = False, scripts: tuple[str, ...] = (), **context) -> HTMLResponse:
        text = report.page(template, scripts, live=live, **context)
        policy = report.content_security_policy(scripts, live=live) + "; frame-ancestors 'none'"
        return HTMLResponse(text, status_code=status, headers={"content-security-policy": policy})

    def _message(self, refused: Declined, back: str = "") -> HTMLResponse:
        headers = {"retry-after": f"{refused.retry_after:.0f}"} if refused.retry_after else {}
        response = self._page("message.html.j2", status=refused.status, title=self.manifest.title, message=refused.message, back=back)
        response.headers.update(headers)
        return response


async def _drain(receive, budget: int) -> None:
    """Read and drop what is left of a request body, up to `budget` bytes."""
    while budget > 0:
        message = await receive()
        budget -= len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def _same_site(request: Request) -> None:
    """Refuse a form a page of another site made the browser send (the Origin header, or
    Sec-Fetch-Site, says where it came from; curl sends neither)."""
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site") == "cross-site" or (origin and origin.split("://", 1)[-1] != request.headers.get("host")):
        raise Declined(403, "the form was not sent from this site's page: open your page and upload from there")


def _shown_name(filename: str) -> str:
    """What the student called the file, as text to show (never a path): printable, at
    most 120 characters."""
    text = "".join(ch for ch in filename if ch.isprintable()).strip()
    return text[:120] or "notebook.ipynb"


def _json_refusal(refused: Declined) -> JSONResponse:
    headers = {"retry-after": f"{refused.retry_after:.0f}"} if refused.retry_after else None
    return JSONResponse({"ok": False, "message": refused.message}, status_code=refused.status, headers=headers)
