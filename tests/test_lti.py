"""LTI 1.3 (grader/serve/lti.py) against a real platform on loopback (tests/lti_platform.py:
lti1p3platform's launch signing and token endpoint, with AGS and NRPS endpoints that keep
what they were sent): launches verified and forged ones refused, the roster read from the
course with its staff left out, scores posted once per change and never lost while the
LMS is down; then `grader serve --lti` and `grader post-grades` end to end."""

import json
import os
import threading
import time

import httpx
import pytest

from conftest import ROOT
from grader.cli import main
from grader.config import manifest as manifest_mod
from grader.reports import classview
from grader.results import CheckResult, SubmissionResult
from grader.serve import live, lti, start, uploads, web
from grader.store import gradebook, posts
from lti_platform import INSTRUCTOR, LEARNER, TEACHING_ASSISTANT, Platform
from test_serve import Running, free_port, tiny_notebook

TINY = os.path.join(ROOT, "tests", "fixtures", "tiny_assignment")


def registration_file(folder, platform: Platform, **more) -> str:
    path = os.path.join(str(folder), "lti.toml")
    fields = {"issuer": platform.url, "client_id": "grader-tool", "deployment_id": "deployment-1", "auth_url": platform.auth_url,
              "token_url": platform.token_url, "jwks_url": platform.jwks_url, **more}
    with open(path, "w") as handle:
        handle.write("[lti]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items()))
    return path


class Tool:
    """The workshop server's web layer with LTI, served by uvicorn on loopback in a thread
    (nothing is graded: results are put in the gradebook by hand), and its score poster."""

    def __init__(self, out, port: int, registration: str):
        import uvicorn

        self.manifest = manifest_mod.load(TINY)
        self.out, self.url = str(out), f"http://127.0.0.1:{port}"
        self.queue = uploads.Queue(self.out)
        self.book_path = os.path.join(self.out, "gradebook.sqlite")
        self.facts = classview.ClassFacts.of(self.manifest, "test")
        self.pages = live.Live(self.queue, self.book_path, self.facts, 1)
        self.tool = lti.Tool(lti.Registration.load(registration), self.out)
        self.server = web.Server(self.manifest, web.ServerOptions(port=port, url=self.url, code="ABC123"), self.queue, self.pages,
                                 None, False, self.tool)
        self.posting = start._post_scores(self.server, self.tool, self.book_path, self.pages)
        self.uvicorn = uvicorn.Server(uvicorn.Config(self.server.app(), host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def poster(self) -> lti.Poster:
        """The server's poster stopped, and one of the test's own: each step then happens when the test says."""
        self.posting.stop()
        return lti.Poster(self.tool.registration, self.tool.key, self.book_path, "tiny", "Tiny")

    def close(self) -> None:
        self.posting.stop()
        self.uvicorn.should_exit = True
        self.thread.join(10)

    def students(self) -> dict:
        book = gradebook.Gradebook(self.book_path)
        try:
            return book.students(self.manifest.name)
        finally:
            book.close()

    def graded(self, student: str, sha: str, score: float) -> None:
        """A graded submission of `student`, as a run would keep it."""
        book = gradebook.Gradebook(self.book_path)
        try:
            book.put("test", SubmissionResult("tiny", "1", student, "lab.ipynb", sha, "graded", score, 1.0,
                                              (CheckResult("runs", "The answer cell runs", "passed" if score else "failed", score, 1.0, "ran"),)))
            book.record("tiny", gradebook.Stored(student, f"{sha}.ipynb", sha, time.time(), "upload", True))
        finally:
            book.close()

    def view(self):
        book = gradebook.Gradebook(self.book_path)
        try:
            return classview.build(book, self.facts)
        finally:
            book.close()

    def posts(self) -> list[posts.Post]:
        book = gradebook.Gradebook(self.book_path)
        try:
            return posts.Posts(book, "tiny").all()
        finally:
            book.close()


@pytest.fixture
def course(tmp_path):
    """A platform with a course of two learners, an instructor and a teaching assistant, and the tool registered in it."""
    port = free_port()
    platform = Platform(f"http://127.0.0.1:{port}")
    platform.add_member("ada", "Ada Lovelace", [LEARNER], "ada@example.edu")
    platform.add_member("alan", "Alan Turing", [LEARNER], "alan@example.edu")
    platform.add_member("grace", "Grace Hopper", [INSTRUCTOR], "grace@example.edu")
    platform.add_member("tom", "Tom Kilburn", [TEACHING_ASSISTANT])
    with platform:
        tool = Tool(tmp_path / "served", port, registration_file(tmp_path, platform))
        try:
            with httpx.Client(timeout=30) as browser:
                yield platform, tool, browser
        finally:
            tool.close()


def graded_learner(platform, tool, browser, user_id: str = "ada") -> lti.Poster:
    """`user_id` launched once and graded 1 of 1; the test's own poster (the server's stopped)."""
    landed(platform.launch(browser, user_id))
    tool.graded(lti.student_id(platform.url, user_id), "a1", 1.0)
    return tool.poster()


def landed(response) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return response.headers["location"]


def eventually(condition, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("not within the time given")


def test_a_learner_lands_on_their_own_page_and_staff_on_the_instructors_with_the_roster_read(course):
    platform, tool, browser = course
    page = landed(platform.launch(browser, "ada"))
    assert page.startswith("/s/")
    opened = browser.get(tool.url + page)
    assert opened.status_code == 200 and "Ada Lovelace" in opened.text
    student = lti.student_id(platform.url, "ada")
    assert tool.students()[student]["lti_user_id"] == "ada"

    admin = landed(platform.launch(browser, "grace"))
    assert admin.startswith("/a/") and browser.get(tool.url + admin).status_code == 200
    roster = eventually(lambda: len(tool.students()) == 2 and tool.students())  # both learners, read page by page
    assert sorted(fields["lti_user_id"] for fields in roster.values()) == ["ada", "alan"]  # staff are never students
    assert landed(platform.launch(browser, "tom")).startswith("/a/")  # a teaching assistant is staff too
    assert browser.get(tool.url + page).status_code == 200  # the learner's page is theirs still


@pytest.mark.parametrize("forge", ["signature", "audience", "nonce", "deployment", "expired", "issuer", "message_type", "version", "azp"])
def test_a_forged_launch_is_refused_and_opens_nothing(course, forge):
    platform, tool, browser = course
    refused = platform.launch(browser, "ada", forge=forge)
    assert refused.status_code == 403 and "the launch was refused" in refused.text, forge
    assert tool.students() == {} and not tool.queue.linked()


def test_a_replayed_launch_is_refused(course):
    platform, tool, browser = course
    assert landed(platform.launch(browser, "ada")).startswith("/s/")
    replayed = platform.launch(browser, "ada", replay_of=platform.last_id_token)
    assert replayed.status_code == 403 and "the launch was refused" in replayed.text


def test_a_launch_posted_from_another_browser_than_the_login_is_refused(course):
    """Login CSRF: someone begins a login, then has another's browser post the launch."""
    platform, tool, browser = course
    for cookie in (None, "not-the-state"):
        with httpx.Client(timeout=30) as other:
            login = other.get(platform.login_url("ada"))
            state = httpx.URL(login.headers["location"]).params["state"]
        with httpx.Client(timeout=30) as victim:
            if cookie:
                victim.cookies.set(lti.STATE_COOKIE, cookie, domain="127.0.0.1", path="/lti/")
            answer = victim.post(tool.url + "/lti/launch", data={"id_token": "x.y.z", "state": state})
        assert answer.status_code == 403 and "does not belong to the login this browser began" in answer.text


def test_only_the_courses_own_roles_count_and_a_mentor_gets_no_page(course):
    institution_instructor = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Instructor"
    mentor = "http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor"
    assert lti.is_learner([LEARNER, institution_instructor]) and not lti.is_staff([LEARNER, institution_instructor])
    assert lti.is_staff([TEACHING_ASSISTANT]) and not lti.is_learner([LEARNER, TEACHING_ASSISTANT])
    assert not lti.is_staff([mentor]) and not lti.is_learner([mentor])
    platform, tool, browser = course
    platform.add_member("otto", "Otto Observer", [mentor])
    refused = platform.launch(browser, "otto")
    assert refused.status_code == 403 and "no role" in refused.text and not tool.queue.linked(uploads.ADMIN)
    platform.add_member("gus", "Gus Grad", [LEARNER, institution_instructor])  # teaches elsewhere, studies here
    assert landed(platform.launch(browser, "gus")).startswith("/s/")


def test_no_one_joins_by_code_and_no_other_course_launches(course):
    platform, tool, browser = course
    assert browser.get(tool.url + "/").status_code == 404
    assert browser.post(tool.url + "/join", data={"code": "ABC123", "name": "ada"}).status_code == 404
    landed(platform.launch(browser, "ada"))
    book = gradebook.Gradebook(tool.book_path)
    kept = posts.Posts(book, "tiny")
    kept.set_context({**kept.context(), "context_id": "another-course"})
    book.close()
    refused = platform.launch(browser, "alan")
    assert refused.status_code == 403 and "another course" in refused.text


def test_scores_are_posted_once_per_change_and_wait_out_an_lms_that_is_down(course):
    platform, tool, browser = course
    for member in ("ada", "alan"):
        landed(platform.launch(browser, member))
    ada, alan = lti.student_id(platform.url, "ada"), lti.student_id(platform.url, "alan")
    tool.graded(ada, "a1", 1.0)
    tool.pages.changed()  # as a graded upload does: the poster sees the class's new view
    posted = eventually(lambda: platform.scores)
    assert len(posted) == 1
    score = posted[0]
    assert (score["userId"], score["scoreGiven"], score["scoreMaximum"]) == ("ada", 1.0, 1.0)
    assert (score["activityProgress"], score["gradingProgress"]) == ("Completed", "FullyGraded")
    assert score["lineitem"].endswith("?type=grades")  # the line item's query string kept after /scores
    assert list(platform.lineitems) == [score["lineitem"]]  # made once, for the assignment

    tool.pages.changed()
    time.sleep(1.0)
    poster = tool.poster()
    assert poster.enqueue(tool.view()) == 0 and len(platform.scores) == 1  # nothing changed: nothing posted again

    platform.down = True
    book = gradebook.Gradebook(tool.book_path)
    book.set_override("tiny", gradebook.Override(ada, "runs", 0.0, "copied", "teacher", time.time()))
    book.close()
    tool.graded(alan, "b1", 1.0)
    assert poster.enqueue(tool.view()) == 2
    assert poster.deliver()["waiting"] == 2 and len(platform.scores) == 1  # kept, to send again
    platform.down = False
    assert poster.deliver(time.time() + 3600)["posted"] == 2  # once the back-off is over
    assert poster.deliver(time.time() + 7200) == {"posted": 0, "refused": 0, "waiting": 0}
    latest = {s["userId"]: s for s in platform.scores}
    assert len(platform.scores) == 3 and latest["ada"]["scoreGiven"] == 0.0 and latest["alan"]["scoreGiven"] == 1.0
    assert latest["ada"]["timestamp"] > score["timestamp"] and not platform.refused  # later, so the LMS keeps it
    assert {p.state for p in tool.posts()} == {"posted"}

    platform.down = True  # two changes while it is down: the newer replaces the one not sent
    for points in (0.5, 0.25):
        book = gradebook.Gradebook(tool.book_path)
        book.set_override("tiny", gradebook.Override(ada, "runs", points, "partly", "teacher", time.time()))
        book.close()
        assert poster.enqueue(tool.view()) == 1 and poster.deliver()["waiting"] == 1
    platform.down = False
    assert poster.deliver(time.time() + 3600)["posted"] == 1 and platform.scores[-1]["scoreGiven"] == 0.25
    assert [p.state for p in tool.posts()][-2:] == ["superseded", "posted"]
    poster.close()


def test_a_batchs_students_are_matched_to_the_course_by_id_or_email_never_one_who_named_themselves(course):
    platform, tool, browser = course
    book = gradebook.Gradebook(tool.book_path)
    book.record("tiny", gradebook.Stored("alan", "alan/lab.ipynb", "b1", time.time(), "folder", True))  # a batch's student, by their file
    book.add_student("tiny", "ada", {"name": "ada", "browser": "a-browser"})  # someone who joined a workshop as "ada"
    book.close()
    services = tool.tool.client()
    assert lti.sync_roster(services, platform.memberships_url, tool.book_path, "tiny", platform.url, match_known=True) == (2, 2)
    services.close()
    students = tool.students()
    assert students["alan"]["lti_user_id"] == "alan" and "lti_user_id" not in students["ada"]
    assert students[lti.student_id(platform.url, "ada")]["lti_user_id"] == "ada"  # the course's Ada is a student of her own


def test_staff_are_never_posted_not_even_a_learner_who_became_staff(course):
    platform, tool, browser = course
    landed(platform.launch(browser, "ada"))
    landed(platform.launch(browser, "grace"))  # the roster is read; the instructor is no student
    ada = lti.student_id(platform.url, "ada")
    next(m for m in platform.members if m["user_id"] == "ada")["roles"] = [TEACHING_ASSISTANT]
    assert landed(platform.launch(browser, "ada")).startswith("/a/")  # now staff: the instructor's page
    tool.graded(ada, "a1", 1.0)
    poster = tool.poster()
    assert poster.enqueue(tool.view()) == 0 and poster.deliver() == {"posted": 0, "refused": 0, "waiting": 0}
    assert platform.scores == [] and tool.posts() == []
    poster.close()


def test_a_score_is_posted_once_the_student_sees_their_whole_score(course):
    import dataclasses

    from grader.config.manifest import ClassRules

    platform, tool, browser = course
    poster = graded_learner(platform, tool, browser)
    due = time.time() + 3600
    book = gradebook.Gradebook(tool.book_path)
    facts = dataclasses.replace(tool.facts, rules=ClassRules(due=due, check_visibility=(("runs", "after_due_date"),)))
    held = classview.build(book, facts)
    book.close()
    assert poster.enqueue(held, now=due - 60) == 0  # the check is held until the due date: so is the score
    assert poster.enqueue(held, now=due + 60) == 1
    poster.close()


def test_an_lms_that_does_not_know_the_tools_key_yet_keeps_the_scores_waiting_not_refused(course):
    platform, tool, browser = course
    poster = graded_learner(platform, tool, browser)
    platform.tool_keys = {"keys": []}  # registered with no key (or another)
    assert poster.enqueue(tool.view()) == 1
    assert poster.deliver() == {"posted": 0, "refused": 0, "waiting": 1} and "no line item" in tool.posts()[0].answer
    platform.tool_keys = None  # the key pasted in: read from /lti/jwks
    assert poster.deliver(time.time() + 3600)["posted"] == 1 and len(platform.scores) == 1
    poster.close()


def test_a_score_the_lms_refuses_is_kept_as_refused_and_not_sent_again(course):
    platform, tool, browser = course
    landed(platform.launch(browser, "ada"))
    ada = lti.student_id(platform.url, "ada")
    platform.members[:] = [m for m in platform.members if m["user_id"] != "ada"]  # dropped the course since
    tool.graded(ada, "a1", 1.0)
    poster = tool.poster()
    poster.enqueue(tool.view())
    assert poster.deliver() == {"posted": 0, "refused": 1, "waiting": 0}
    assert [p.state for p in tool.posts()] == ["refused"] and "422" in tool.posts()[0].answer
    assert poster.enqueue(tool.view()) == 0 and poster.deliver(time.time() + 3600)["refused"] == 0 and platform.scores == []
    poster.close()


def test_logins_begun_and_never_ended_are_bounded(tmp_path, monkeypatch):
    """Anyone may begin a login: the oldest unfinished ones go first, whatever the flood."""
    monkeypatch.setattr(lti, "MAX_LOGINS", 3)
    registration = lti.Registration("http://127.0.0.1:9", "c", ("d",), "http://127.0.0.1:9/auth", "http://127.0.0.1:9/token",
                                    "http://127.0.0.1:9/jwks")
    tool = lti.Tool(registration, str(tmp_path))
    states = [tool.login({"iss": registration.issuer, "login_hint": "u"}, "http://127.0.0.1:8/lti/launch")[1] for _ in range(5)]
    with pytest.raises(lti.LaunchRefused, match="unknown or too old"):
        tool.launch("x.y.z", states[1], states[1])
    with pytest.raises(lti.LaunchRefused) as kept:
        tool.launch("x.y.z", states[4], states[4])  # still known: refused for its token instead
    assert "unknown or too old" not in str(kept.value)


def test_the_registration_is_checked_before_anything_starts(tmp_path):
    path = tmp_path / "lti.toml"
    path.write_text('[lti]\nissuer = "https://lms.example.edu"\nclient_id = "x"\n')
    with pytest.raises(Exception) as raised:
        lti.Registration.load(str(path))
    assert "deployment_id" in str(raised.value) and "auth_url" in str(raised.value)
    assert lti.scores_url("https://lms.example.edu/api/lti/courses/1/line_items/7?a=b") == \
        "https://lms.example.edu/api/lti/courses/1/line_items/7/scores?a=b"


@pytest.mark.slow
def test_grader_serve_launched_from_the_course_posts_each_graded_upload_and_post_grades_posts_the_rest(tmp_path, capsys):
    """The whole way: `grader serve --lti`, a learner launched from the course uploads, the
    score reaches the LMS; then, the server stopped, an override and `grader post-grades`."""
    port = free_port()
    platform = Platform(f"http://127.0.0.1:{port}")
    platform.add_member("ada", "Ada Lovelace", [LEARNER], "ada@example.edu")
    platform.add_member("grace", "Grace Hopper", [INSTRUCTOR])
    out = tmp_path / "served"
    with platform:
        registration = registration_file(tmp_path, platform)
        server = Running(TINY, out, port=port, extra=("--lti", registration, "--url", f"http://127.0.0.1:{port}"))
        try:
            with httpx.Client(timeout=60) as browser:
                page = landed(platform.launch(browser, "ada"))
                form = browser.get(f"{server.http.base_url}{page}").text
                csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                sent = browser.post(f"{server.http.base_url}{page}/upload", data={"csrf": csrf},
                                    files={"notebook": ("lab.ipynb", tiny_notebook(), "application/x-ipynb+json")},
                                    headers={"origin": str(server.http.base_url)})
                assert sent.status_code in (200, 202, 303), sent.text[:500]
                eventually(lambda: platform.scores, 300)
                assert [(s["userId"], s["scoreGiven"], s["scoreMaximum"]) for s in platform.scores] == [("ada", 1.0, 1.0)]
                link = platform.scores[0]["comment"].split("The scorecard: ", 1)[1]
                assert link == f"http://127.0.0.1:{port}/lti/scorecard/upload-1"
                assert "The answer cell runs" in eventually(lambda: (page := browser.get(link)).status_code == 200 and page).text  # the browser that launched
                assert httpx.get(link).status_code == 404  # no one else
        finally:
            server.stop()
        # no server answers /lti/jwks now: the tool's public key is pasted into the LMS's registration
        assert main(["post-grades", str(out), "--lti", registration, "--public-key"]) == 0
        platform.tool_keys = {"keys": [json.loads(capsys.readouterr().out.strip().splitlines()[-1])]}
        assert main(["post-grades", str(out), "--lti", registration]) == 0  # nothing changed: nothing posted again
        assert len(platform.scores) == 1
        student = lti.student_id(platform.url, "ada")
        assert main(["override", str(out), "--student", student, "--check", "runs", "--points", "0", "--comment", "copied"]) == 0
        platform.down = True
        assert main(["post-grades", str(out), "--lti", registration]) == 1  # the LMS is down: kept, to send again
        platform.down = False
        book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
        book.connection.execute("UPDATE lti_posts SET next_try = 0")  # the back-off over
        book.close()
        assert main(["post-grades", str(out), "--lti", registration]) == 0
        assert [s["scoreGiven"] for s in platform.scores] == [1.0, 0.0]
