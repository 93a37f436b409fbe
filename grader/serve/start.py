"""`grader serve` started: the preflight, the workers, the links announced, and the server run
until interrupted; and the students' personal links written as a CSV (`grader links`)."""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
import threading

from grader.config.manifest import Manifest
from grader.reports import classview, exports
from grader.run import Options
from grader.serve import live, lti, uploads
from grader.serve.web import Server, ServerOptions
from grader.serve.workshop import Workshop
from grader.store import gradebook


def write_links(queue: uploads.Queue, students: dict[str, dict], url: str, path: str, renew: set[str] | None = None) -> int:
    """Issue links to the students in `students` (id -> roster fields) who have none, or
    new ones to those in `renew` (their old links stop working), and write them to `path`
    as a CSV (student, name, email, link), readable by its owner only. Returns how many."""
    linked = queue.linked()
    chosen = [s for s in students if (s in renew if renew is not None else s not in linked)]
    rows = [[s, students[s].get("name", ""), students[s].get("email", ""), f"{url.rstrip('/')}/s/{queue.issue_link(s)}"] for s in chosen]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # a file to read and mail from: one line a student, as text files here end
    writer.writerow(["student", "name", "email", "link"])
    writer.writerows([[exports.spreadsheet_cell(v) for v in row[:3]] + [row[3]] for row in rows])
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", newline="") as stream:
        stream.write(buffer.getvalue())
    return len(rows)


def run(manifest: Manifest, options: Options, settings: ServerOptions) -> None:
    """Run the preflight, start the workers and serve until interrupted (Ctrl-C, SIGTERM)."""
    import uvicorn

    registration = lti.Registration.load(settings.lti) if settings.lti else None  # a wrong one stops before the preflight
    if registration is not None:
        lti.check_address(settings.public_url)
    queue = uploads.Queue(options.out_dir)
    holder: dict = {}
    posting = None
    workshop = Workshop(manifest, options, queue, on_change=lambda: holder["live"].changed() if "live" in holder else None)
    found = workshop.open()
    try:
        print(f"preflight of {manifest.name}: passed", flush=True)
        for line in found.lines():
            print(f"  {line}")
        book = gradebook.Gradebook(workshop.book_path)
        try:
            students = book.students(manifest.name)
        finally:
            book.close()
        roster_mode = queue.setting("mode", lambda: "roster" if (options.roster or students) else "workshop") == "roster"
        if options.roster and not roster_mode:
            queue.set_setting("mode", "roster")
            roster_mode = True
        holder["live"] = live_pages = live.Live(queue, workshop.book_path, workshop.facts, workshop.jobs)
        tool = lti.Tool(registration, options.out_dir) if registration is not None else None
        server = Server(manifest, settings, queue, live_pages, workshop, roster_mode, tool)
        if tool is not None:
            posting = _post_scores(server, tool, workshop.book_path, live_pages)
        _announce(server, queue, students, settings)
        config = uvicorn.Config(server.app(), host=settings.host, port=settings.port, log_level="warning",
                                **proxy_settings(settings.trusted_proxies), server_header=False, timeout_keep_alive=5)
        # uvicorn stops on SIGTERM, then raises it again: let that unwind through `finally`.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        uvicorn.Server(config).run()
    finally:
        print("grader serve: stopping; uploads not graded yet are kept and graded at the next start", file=sys.stderr, flush=True)
        if posting is not None:
            posting.stop()
        workshop.close()


def _post_scores(server: Server, tool: "lti.Tool", book_path: str, live_pages: live.Live) -> "lti.Posting":
    """The LMS's side of the server: scores posted after each change of the class, the roster
    read (NRPS) when staff launch."""
    manifest = server.manifest
    def view_of():
        book = gradebook.Gradebook(book_path)
        try:
            return classview.build(book, live_pages.facts)
        finally:
            book.close()

    poster = lti.Poster(tool.registration, tool.key, book_path, manifest.name, manifest.title,
                        link=f"{server.settings.public_url}/lti/scorecard/{{upload}}")
    posting = lti.Posting(poster, view_of).start()
    live_pages.on_snapshot(lambda snapshot: posting.offer(snapshot.view))

    def read_roster(url: str) -> None:
        services = tool.client()
        try:
            learners, staff = lti.sync_roster(services, url, book_path, manifest.name, tool.registration.issuer)
            print(f"LTI: the course's roster read: {learners} learner(s), {staff} staff (never graded)", flush=True)
            live_pages.changed()
        except (lti.PlatformDown, lti.Refused) as error:
            print(f"LTI: the course's roster could not be read now: {error}", file=sys.stderr, flush=True)
        finally:
            services.close()

    server.on_roster = lambda url: threading.Thread(target=read_roster, args=(url,), name="grader-lti-roster", daemon=True).start()
    return posting


def proxy_settings(trusted: str) -> dict:
    """uvicorn's settings for forwarded headers: believed only from the proxies named. Without
    one, none is believed (a client on this host, or any other, could otherwise set its own
    address in X-Forwarded-For and escape the limits per address)."""
    proxies = [address.strip() for address in trusted.split(",") if address.strip()]
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(proxies)}


def _exit_on_signal(number, frame) -> None:
    raise SystemExit(128 + number)


def _announce(server: Server, queue: uploads.Queue, students: dict, settings: ServerOptions) -> None:
    url = settings.public_url
    if not queue.linked(uploads.ADMIN):
        print(f"the instructor's page (keep it to yourself; shown once, `grader links OUT --admin` makes a new one):\n"
              f"  {url}/a/{queue.issue_link('instructor', uploads.ADMIN)}")
    else:
        print("the instructor's page: the link printed at the first start (`grader links OUT --admin` makes a new one)")
    if not queue.linked(uploads.PROJECTOR):
        print(f"the projector's page (the join code and the class as a whole, no names; `grader links OUT --projector` makes a new one):\n"
              f"  {url}/p/{queue.issue_link('projector', uploads.PROJECTOR)}")
    if server.roster_mode:
        if settings.links:
            count = write_links(queue, students, url, settings.links)
            print(f"personal links of {count} student(s) without one written to {settings.links}")
        missing = len(set(students) - queue.linked())
        if missing:
            print(f"{missing} student(s) have no link yet: `grader serve ... --links links.csv` or `grader links OUT --url {url}`")
    else:
        print(f"students join at {url}/ with the code {server.code}")
    if server.tool is not None:
        print(f"LTI 1.3: registered with {server.tool.registration.issuer}; login {url}/lti/login, launch {url}/lti/launch, "
              f"keys {url}/lti/jwks")
    print(f"serving on http://{settings.host}:{settings.port}/ (Ctrl-C stops; nothing accepted is lost)", flush=True)
