"""LTI 1.3: the workshop server as a tool a course's LMS launches, whose class comes from the
LMS (Names and Role Provisioning Services) and whose scores go back to it by themselves
(Assignment and Grade Services).

    GET  /lti/jwks          the tool's public key, as a JWKS (the LMS checks the tool's requests with it)
    GET|POST /lti/login     the LMS's login initiation -> a redirect to its authorization endpoint
                            with a state (kept here, and in a cookie) and a nonce
    POST /lti/launch        the LMS's signed id_token: verified (signature by the LMS's keys,
                            issuer, audience, expiry, nonce, deployment, message type), then a
                            learner lands on their own upload page, staff on the instructor's page

The registration (`grader serve --lti lti.toml`, see `Registration.load`) names the LMS's
issuer, the tool's client id there, its deployments and the LMS's three endpoints. The
tool's key is made once and kept in the output folder. Signing and verifying tokens, and
reading keys, is joserfc's: nothing of JWT or JWKS is written here.

A learner is a student of the class (id `lti-` and a hash of the LMS's user id, their
name from the launch); staff (instructors, teaching assistants, administrators, content
developers) are never students, never graded and never posted. Scores are posted by
`Poster` (the gradebook's `lti_posts` keeps each one, so none is lost or sent twice).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import secrets
import threading
import time
import tomllib
import urllib.parse
import uuid

from grader.faults import GraderError, ManifestError
from grader.store import gradebook, posts as posts_mod
from grader.store.storage import STATE, write_atomic

log = logging.getLogger(__name__)

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
SCOPE_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCOPE_MEMBERSHIP = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
# The course's own roles (LIS v2 context roles: membership#Role, or membership/Role#SubRole for a
# sub-role); institution and system roles say nothing of this course and are not read.
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
STAFF_ROLES = frozenset({"Instructor", "ContentDeveloper", "Administrator"})  # with their sub-roles (TeachingAssistant is Instructor's)
KEY_FILE = "lti-key.pem"
LOGIN_SECONDS = 600  # a login's state and nonce are good this long
MAX_LOGINS = 20_000  # logins under way kept at once (anyone may begin one)
STATE_COOKIE = "grader_lti_state"
TIMEOUT = 10.0  # seconds for a request to the LMS


class LaunchRefused(Exception):
    """A login or launch that is not the LMS's, or not for this tool: the reason, in words."""


@dataclasses.dataclass(frozen=True)
class Registration:
    """The tool's registration in one LMS (the `[lti]` table of a TOML file)."""

    issuer: str
    client_id: str
    deployment_ids: tuple[str, ...]
    auth_url: str  # the LMS's OIDC authorization endpoint
    token_url: str  # its OAuth 2 token endpoint
    jwks_url: str  # its public keys
    lineitems: str = ""  # the course's line items (AGS): for `grader post-grades` without a launch
    memberships: str = ""  # the course's members (NRPS): the same
    key: str = ""  # the tool's private key (PEM; made there the first time): "" keeps it in the output folder

    @classmethod
    def load(cls, path: str) -> "Registration":
        try:
            with open(path, "rb") as handle:
                table = tomllib.load(handle).get("lti")
        except OSError as error:
            raise GraderError(f"cannot read the LTI registration {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ManifestError(f"{path} is not valid TOML: {error}") from None
        if not isinstance(table, dict):
            raise ManifestError(f"{path} has no [lti] table", hint="see the README's LTI section for its fields")
        deployments = table.get("deployment_ids", [table["deployment_id"]] if "deployment_id" in table else [])
        if not isinstance(deployments, list):
            raise ManifestError(f"{path}: [lti] deployment_ids is a list of strings (or give one deployment_id)")
        values = {name: table.get(name) for name in ("issuer", "client_id", "auth_url", "token_url", "jwks_url")}
        missing = [name for name, value in values.items() if not isinstance(value, str) or not value]
        if missing or not deployments or not all(isinstance(d, str) and d for d in deployments):
            raise ManifestError(f"{path}: [lti] needs {', '.join(missing + ([] if deployments else ['deployment_id']))}",
                                hint="copy them from the LMS's registration of the tool (README: LTI)")
        for name in ("auth_url", "token_url", "jwks_url", "lineitems", "memberships"):
            url = table.get(name, "")
            if url and urllib.parse.urlsplit(url).scheme not in ("https", "http"):
                raise ManifestError(f"{path}: [lti] {name} is not a web address: {url!r}")
        return cls(values["issuer"], values["client_id"], tuple(deployments), values["auth_url"], values["token_url"],
                   values["jwks_url"], table.get("lineitems", ""), table.get("memberships", ""),
                   os.path.join(os.path.dirname(os.path.abspath(path)), table["key"]) if table.get("key") else "")


def check_address(public_url: str) -> None:
    """The server's address, as the LMS and the students' browsers reach it: https (the launch
    is posted from the LMS's site, and only a Secure cookie comes with it), or this machine."""
    parts = urllib.parse.urlsplit(public_url)
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise GraderError(f"--lti needs the https address students and the LMS use, not {public_url}",
                          hint="pass --url https://grader.example.org (a TLS proxy in front: see 'Behind a TLS proxy')")


# --- the tool's key -----------------------------------------------------------------------


def tool_key(out_dir: str, path: str = ""):
    """The tool's RSA key, made the first time and kept (readable by its owner only) at `path`,
    else in the output folder's state: the LMS learns its public half from /lti/jwks (or
    from `grader post-grades --public-key`, pasted into the LMS)."""
    from joserfc.jwk import RSAKey

    path = path or os.path.join(out_dir, STATE, KEY_FILE)
    if os.path.exists(path):
        with open(path, "rb") as handle:
            key = RSAKey.import_key(handle.read())
    else:
        key = RSAKey.generate_key(2048, private=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, key.as_pem(private=True).decode(), mode=0o600)
    return RSAKey.import_key(key.as_pem(private=True), parameters={"kid": key.thumbprint(), "alg": "RS256", "use": "sig"})


def public_jwks(key) -> dict:
    return {"keys": [key.as_dict(private=False)]}


# --- who launched ------------------------------------------------------------------------


def _course_roles(roles) -> set[str]:
    """The principal roles held in the course (a sub-role counts as its principal role)."""
    found = set()
    for role in roles or ():
        if isinstance(role, str) and role.startswith(MEMBERSHIP) and role[len(MEMBERSHIP):][:1] in ("#", "/"):
            found.add(role[len(MEMBERSHIP) + 1:].split("#", 1)[0])
    return found


def is_staff(roles) -> bool:
    """Teaches the course (instructor, teaching assistant, content developer, administrator): never a student."""
    return bool(_course_roles(roles) & STAFF_ROLES)


def is_learner(roles) -> bool:
    """A student of the course (and not also its staff); a mentor or observer is neither."""
    held = _course_roles(roles)
    return "Learner" in held and not held & STAFF_ROLES


def student_id(issuer: str, user_id: str) -> str:
    """The class's id of the LMS's user: stable, and safe in a path or a URL."""
    return "lti-" + hashlib.sha256(f"{issuer}\x00{user_id}".encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Launch:
    """A verified launch: who, in which course and link, and the services it offers."""

    user_id: str
    name: str
    email: str
    roles: tuple[str, ...]
    context_id: str
    resource_link: str
    lineitems: str  # AGS: the course's line items ("" without AGS)
    lineitem: str  # AGS: this link's own line item, where the LMS made one ("": the tool finds or makes it)
    scopes: tuple[str, ...]
    memberships: str  # NRPS ("" without it)

    @property
    def staff(self) -> bool:
        return is_staff(self.roles)

    @property
    def learner(self) -> bool:
        return is_learner(self.roles)


class Tool:
    """The LTI side of one server: logins under way, the LMS's keys, launches verified."""

    def __init__(self, registration: Registration, out_dir: str):
        self.registration, self.out_dir = registration, out_dir
        self.key = tool_key(out_dir, registration.key)
        self._logins: dict[str, tuple[str, float]] = {}  # state -> (nonce, when it expires)
        self._used: dict[str, float] = {}  # nonces of launches accepted -> when they may be forgotten
        self._keys = None  # the LMS's KeySet, as last fetched
        self._keys_at = 0.0
        self._lock = threading.Lock()

    # --- login initiation -----------------------------------------------------------------

    def login(self, params: dict, launch_url: str) -> tuple[str, str]:
        """The LMS's login initiation (`params`: its query or form): (the redirect to its
        authorization endpoint, the state to keep in the browser's cookie)."""
        registration = self.registration
        if params.get("iss") != registration.issuer:
            raise LaunchRefused(f"the login came from {str(params.get('iss'))[:80]!r}, not from the LMS this tool is registered with")
        if params.get("client_id") not in (None, registration.client_id):
            raise LaunchRefused("the login is for another tool (its client_id is not this tool's)")
        deployment = params.get("lti_deployment_id")
        if deployment is not None and deployment not in registration.deployment_ids:
            raise LaunchRefused("the login is from a deployment this tool does not know")
        if not params.get("login_hint"):
            raise LaunchRefused("the login names no user (login_hint)")
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self._forget(now)
            while len(self._logins) >= MAX_LOGINS:  # a flood of logins begun and never ended: the oldest go
                del self._logins[next(iter(self._logins))]
            self._logins[state] = (nonce, now + LOGIN_SECONDS)
        query = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
                 "client_id": registration.client_id, "redirect_uri": launch_url, "login_hint": params["login_hint"],
                 "state": state, "nonce": nonce}
        if params.get("lti_message_hint"):
            query["lti_message_hint"] = params["lti_message_hint"]
        return _with_query(registration.auth_url, query), state

    def _forget(self, now: float) -> None:
        for state in [s for s, (_, until) in self._logins.items() if until < now]:
            del self._logins[state]
        for nonce in [n for n, until in self._used.items() if until < now]:
            del self._used[nonce]

    # --- the launch ------------------------------------------------------------------------

    def launch(self, id_token: str, state: str, cookie: str | None) -> Launch:
        """Verify a launch (the form the LMS posted): a Launch, or LaunchRefused saying why."""
        from joserfc import jwt
        from joserfc.errors import JoseError

        if not cookie or cookie != state:  # a launch posted from a browser that did not begin its login (login CSRF)
            raise LaunchRefused("the launch does not belong to the login this browser began")
        with self._lock:
            nonce, until = self._logins.pop(state, (None, 0.0))
        if nonce is None or until < time.time():
            raise LaunchRefused("the launch's login is unknown or too old: launch the lab again from the course")
        registration = self.registration
        try:
            token = jwt.decode(id_token, self._platform_keys(id_token), algorithms=["RS256"])
            claims = token.claims
            jwt.JWTClaimsRegistry(leeway=60, iss={"essential": True, "value": registration.issuer},
                                  aud={"essential": True, "value": registration.client_id},
                                  exp={"essential": True}, iat={"essential": True},
                                  nonce={"essential": True, "value": nonce}, sub={"essential": True}).validate(claims)
        except (JoseError, ValueError) as error:
            raise LaunchRefused(f"the launch's token is not valid: {_jose_reason(error)}") from None
        audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audience) > 1 and claims.get("azp") != registration.client_id:
            raise LaunchRefused("the launch's token names other audiences and is not authorized for this tool (azp)")
        if claims.get(CLAIM + "deployment_id") not in registration.deployment_ids:
            raise LaunchRefused("the launch is from a deployment this tool does not know")
        if claims.get(CLAIM + "message_type") != "LtiResourceLinkRequest":
            raise LaunchRefused(f"this tool takes resource-link launches, not {str(claims.get(CLAIM + 'message_type'))[:60]!r}")
        if claims.get(CLAIM + "version") != "1.3.0":
            raise LaunchRefused("the launch is not LTI 1.3.0")
        with self._lock:
            if nonce in self._used:
                raise LaunchRefused("this launch was used already: launch the lab again from the course")
            self._used[nonce] = float(claims["exp"]) + 60
        ags, nrps = claims.get(AGS_CLAIM) or {}, claims.get(NRPS_CLAIM) or {}
        name = " ".join(str(claims.get("name") or " ".join(str(claims.get(k, "")) for k in ("given_name", "family_name"))).split())
        return Launch(str(claims["sub"])[:255], name[:60], str(claims.get("email", ""))[:200],
                      tuple(r for r in claims.get(CLAIM + "roles") or () if isinstance(r, str)),
                      str((claims.get(CLAIM + "context") or {}).get("id", "")), str((claims.get(CLAIM + "resource_link") or {}).get("id", "")),
                      str(ags.get("lineitems", "")), str(ags.get("lineitem", "")), tuple(ags.get("scope") or ()),
                      str(nrps.get("context_memberships_url", "")))

    def _platform_keys(self, id_token: str):
        """The LMS's keys, fetched again when the token names a key not among them (the LMS
        rotated its keys), at most once a minute."""
        from joserfc import jws
        from joserfc.jwk import KeySet

        kid = jws.extract_compact(id_token.encode()).protected.get("kid")
        with self._lock:
            keys, fetched = self._keys, self._keys_at
        known = keys is not None and any(k.kid == kid for k in keys.keys)
        if not known and time.monotonic() - fetched > 60:
            import httpx

            try:
                answer = httpx.get(self.registration.jwks_url, timeout=TIMEOUT)
                answer.raise_for_status()
                keys = KeySet.import_key_set(answer.json())
            except (httpx.HTTPError, ValueError) as error:
                raise LaunchRefused(f"the LMS's keys could not be read from {self.registration.jwks_url}: {error}") from None
            with self._lock:
                self._keys, self._keys_at = keys, time.monotonic()
        if keys is None:
            raise LaunchRefused("the LMS's keys are not known yet")
        return keys

    # --- the services -------------------------------------------------------------------

    def client(self) -> "Services":
        return Services(self.registration, self.key)


def _jose_reason(error: Exception) -> str:
    text = getattr(error, "description", "") or str(error) or type(error).__name__
    return text[:200]


def _with_query(url: str, query: dict) -> str:
    parts = urllib.parse.urlsplit(url)
    joined = "&".join(p for p in (parts.query, urllib.parse.urlencode(query)) if p)
    return urllib.parse.urlunsplit(parts._replace(query=joined))


def scores_url(lineitem: str) -> str:
    """A line item's scores endpoint: its path and `/scores`, its query string after that
    (an LMS's line item id may carry one)."""
    parts = urllib.parse.urlsplit(lineitem)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


class PlatformDown(Exception):
    """The LMS did not answer, or answered that it cannot now (5xx, 429): try again later."""


class Refused(Exception):
    """The LMS refused a request for good (a 4xx): its answer."""


class Services:
    """The LMS's services, as this tool: an access token (a client-credentials grant with an
    assertion signed by the tool's key), the course's line items and scores (AGS), its
    members (NRPS)."""

    def __init__(self, registration: Registration, key):
        import httpx

        self.registration, self.key = registration, key
        self.http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._tokens: dict[str, tuple[str, float]] = {}  # scopes -> (token, when it expires)

    def close(self) -> None:
        self.http.close()

    def token(self, scopes: tuple[str, ...]) -> str:
        from joserfc import jwt

        wanted = " ".join(sorted(scopes))
        held = self._tokens.get(wanted)
        if held is not None and held[1] > time.time() + 30:
            return held[0]
        now = int(time.time())
        assertion = jwt.encode({"alg": "RS256", "kid": self.key.kid},
                               {"iss": self.registration.client_id, "sub": self.registration.client_id,
                                "aud": self.registration.token_url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}, self.key)
        answer = self._send("POST", self.registration.token_url, data={
            "grant_type": "client_credentials", "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion, "scope": wanted})
        found = answer.json()
        self._tokens[wanted] = (found["access_token"], time.time() + float(found.get("expires_in", 3600)))
        return found["access_token"]

    def _send(self, method: str, url: str, scopes: tuple[str, ...] = (), refusable: bool = False, **request):
        """One request; with `scopes`, as the bearer of a token for them (asked for again once
        if the LMS no longer takes it). Raises PlatformDown, or with `refusable` Refused for a
        4xx that says no to what was sent (not to the tool: an LMS that does not know the
        tool's key yet, or has not granted it the services, is asked again later)."""
        import httpx

        given = request.pop("headers", {})
        for again in (False, True):
            headers = dict(given)
            if scopes:
                headers["Authorization"] = f"Bearer {self.token(scopes)}"
            try:
                answer = self.http.request(method, url, headers=headers, **request)
            except httpx.HTTPError as error:
                raise PlatformDown(f"{type(error).__name__}: {error}") from None
            if answer.status_code == 401 and scopes and not again:
                self._tokens.clear()
                continue
            if answer.is_success:
                return answer
            if refusable and 400 <= answer.status_code < 500 and answer.status_code not in (401, 403, 429):
                raise Refused(f"{answer.status_code} {answer.text[:300]}")
            raise PlatformDown(f"{answer.status_code} {answer.text[:200]}")
        raise PlatformDown("401: the LMS does not take the tool's access token")

    # --- NRPS ---------------------------------------------------------------------------

    def members(self, url: str) -> list[dict]:
        """Every member of the course, page after page (the `next` link)."""
        found, pages = [], 0
        while url and pages < 1000:
            answer = self._send("GET", url, (SCOPE_MEMBERSHIP,), headers={"Accept": MEMBERSHIPS_TYPE})
            found += [m for m in answer.json().get("members", []) if isinstance(m, dict)]
            url, pages = answer.links.get("next", {}).get("url", ""), pages + 1
        return found

    # --- AGS ------------------------------------------------------------------------------

    def lineitem(self, lineitems: str, resource_link: str, tag: str, label: str, maximum: float) -> str:
        """The line item of this assignment in the course (found by its resource id, else made): its id URL."""
        scopes = (SCOPE_LINEITEM, SCOPE_SCORE)
        query = {"resource_id": tag, **({"resource_link_id": resource_link} if resource_link else {})}
        answer = self._send("GET", _with_query(lineitems, query), scopes, headers={"Accept": LINEITEMS_TYPE})
        for item in answer.json() if isinstance(answer.json(), list) else []:
            if isinstance(item, dict) and item.get("resourceId") == tag and item.get("id"):
                return item["id"]
        body = {"scoreMaximum": maximum, "label": label, "resourceId": tag, "tag": "grader"}
        if resource_link:
            body["resourceLinkId"] = resource_link
        answer = self._send("POST", lineitems, scopes, json=body,
                            headers={"Content-Type": LINEITEM_TYPE, "Accept": LINEITEM_TYPE})
        return answer.json()["id"]

    def post_score(self, lineitem: str, body: dict) -> None:
        import json

        self._send("POST", scores_url(lineitem), (SCOPE_LINEITEM, SCOPE_SCORE), refusable=True, content=json.dumps(body).encode(),
                   headers={"Content-Type": SCORE_TYPE})


def iso(moment: float) -> str:
    """An AGS timestamp: ISO 8601, milliseconds, UTC."""
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat(timespec="milliseconds")




# --- the class and its scores -------------------------------------------------------------


def remember(book_path: str, assignment: str, launch: Launch) -> None:
    """What a launch says of the course's services, kept for the poster and for `grader post-grades`.
    The lab is served to one course: the first launch's; a launch from another course (or
    another deployment's copy of it) is refused, so no one's score goes to another gradebook."""
    book = gradebook.Gradebook(book_path)
    try:
        kept = posts_mod.Posts(book, assignment)
        context = kept.context()
        if context.get("context_id") and launch.context_id != context["context_id"]:
            raise LaunchRefused("this grader serves the lab to another course: ask your instructor for the lab's link in yours")
        given = {"lineitems": launch.lineitems, "lineitem": launch.lineitem, "memberships": launch.memberships,
                 "resource_link": launch.resource_link, "context_id": launch.context_id, "scopes": list(launch.scopes)}
        changed = {k: v for k, v in given.items() if v and v != context.get(k)}
        if changed:
            if "lineitems" in changed or "resource_link" in changed:
                context.pop("lineitem_id", None)  # found again where the course now keeps them
            kept.set_context({**context, **changed})
    finally:
        book.close()


def add_learner(book: gradebook.Gradebook, assignment: str, issuer: str, user_id: str, name: str, email: str, roles) -> str:
    """The class's student who is the LMS's learner `user_id` (the one already bound to that
    user, else a new one), their name and roles brought up to date: their id."""
    students = book.students(assignment)
    student = next((s for s, fields in students.items() if fields.get("lti_user_id") == user_id), None) or student_id(issuer, user_id)
    fields = students.get(student, {})
    wanted = {**fields, "name": name or fields.get("name") or student, "email": email or fields.get("email", ""),
              "lti_user_id": user_id, "lti_roles": list(roles)}
    if wanted != fields:
        book.add_student(assignment, student, wanted)
    return student


def update_roles(book: gradebook.Gradebook, assignment: str, user_id: str, roles) -> None:
    """The roles of the student bound to `user_id`, as the LMS says now (a learner who became
    staff is posted no more)."""
    for student, fields in book.students(assignment).items():
        if fields.get("lti_user_id") == user_id and fields.get("lti_roles") != list(roles):
            book.add_student(assignment, student, {**fields, "lti_roles": list(roles)})


def sync_roster(services: Services, url: str, book_path: str, assignment: str, issuer: str,
                match_known: bool = False) -> tuple[int, int]:
    """The course's members (NRPS) into the class: each learner is the student bound to their
    LMS user id, else (`match_known`: a batch's students, known by their files) the student
    with their email or id, else a new student; staff are never students. Returns (learners, staff)."""
    members = services.members(url)
    book = gradebook.Gradebook(book_path)
    learners = staff = 0
    try:
        submitted = {s.student for s in book.submissions(assignment)} if match_known else set()  # read once, not per member
        for member in members:
            roles = [r for r in member.get("roles") or () if isinstance(r, str)]
            user_id = str(member.get("user_id") or "")
            if not user_id or str(member.get("status", "Active")) != "Active":
                continue
            update_roles(book, assignment, user_id, roles)
            if is_staff(roles):
                staff += 1
                continue
            if not is_learner(roles):
                continue
            learners += 1
            name, email = " ".join(str(member.get("name") or "").split())[:60], str(member.get("email") or "")[:200]
            students = book.students(assignment)
            known = _same_person(students, submitted, user_id, email) if match_known else None
            if known is None:
                add_learner(book, assignment, issuer, user_id, name, email, roles)
            else:
                fields = students.get(known, {})
                book.add_student(assignment, known, {**fields, "name": fields.get("name") or name, "email": fields.get("email") or email,
                                                     "lti_user_id": user_id, "lti_roles": roles})
    finally:
        book.close()
    return learners, staff


def _same_person(students: dict[str, dict], submitted: set[str], user_id: str, email: str) -> str | None:
    """A batch's student who is the LMS's member: their email, else a student id equal to the
    user id or to the email's name part; never a student bound to another LMS user, or one
    who joined a workshop by its code (they named themselves)."""
    def free(student: str) -> bool:
        fields = students.get(student, {})
        return not fields.get("lti_user_id") and not fields.get("browser")

    if email:
        for student, fields in students.items():
            if str(fields.get("email", "")).lower() == email.lower() and free(student):
                return student
    for candidate in (user_id, email.split("@")[0] if email else ""):
        if candidate and (candidate in students or candidate in submitted) and free(candidate):
            return candidate
    return None


def backoff(tries: int) -> float:
    """Seconds before sending again a score the LMS could not take: 5, 10, 20 ... up to 10 minutes."""
    return min(600.0, 5.0 * 2 ** tries)


class Poster:
    """Each learner's score to the LMS, once per change: what their row of the class says
    (the submission that counts, the instructor's points, the late penalty), once the
    student sees their whole score (grader/reports/visibility.py). One process at a time
    makes and sends posts (a lock beside the gradebook): the server's poster and `grader
    post-grades` on the same folder never send one post twice or make two line items."""

    def __init__(self, registration: Registration, key, book_path: str, assignment: str, label: str, link: str = ""):
        self.registration, self.book_path, self.assignment, self.label = registration, book_path, assignment, label
        self.link = link  # the address of a student's scorecard, with {upload} for its name ("": none to give)
        self.services = Services(registration, key)
        self.lock_path = os.path.join(os.path.dirname(os.path.abspath(book_path)), STATE, "lti-posts.lock")

    def close(self) -> None:
        self.services.close()

    def _locked(self):
        import contextlib
        import fcntl

        @contextlib.contextmanager
        def held():
            os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
            with open(self.lock_path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        return held()

    def enqueue(self, view, now: float | None = None) -> int:
        """A post for each learner whose score differs from the last one made: how many."""
        from grader.reports import visibility

        now = time.time() if now is None else now
        made = 0
        with self._locked():
            book = gradebook.Gradebook(self.book_path)
            try:
                kept, students = posts_mod.Posts(book, self.assignment), book.students(self.assignment)
                latest = kept.latest()
                for row in view.rows:
                    fields = students.get(row.student, {})
                    user_id = fields.get("lti_user_id")
                    if not user_id or not is_learner(fields.get("lti_roles")) or row.final is None:
                        continue
                    if not visibility.of_row(view, row, now).total:
                        continue  # posted once the student sees their whole score
                    score, maximum = round(max(0.0, row.final), 4), float(row.max_score)
                    last = latest.get(row.student)
                    if last is not None and (last.score, last.maximum, last.user_id) == (score, maximum, user_id):
                        continue
                    kept.add(row.student, user_id, score, maximum, self._comment(row, score, maximum))
                    made += 1
            finally:
                book.close()
        return made

    def _comment(self, row, score: float, maximum: float) -> str:
        said = f"{score:g} of {maximum:g} points" + (f" ({row.penalty:g} taken for lateness)" if row.penalty else "")
        counted = row.counted.stored.path.removesuffix(".ipynb") if row.counted is not None else ""
        if self.link and counted.startswith("upload-"):
            return f"{said}. The scorecard: {self.link.format(upload=counted)}"
        return f"{said}. The scorecard: open the lab from the course."

    def deliver(self, now: float | None = None) -> dict[str, int]:
        """Send the posts due: how many were posted, refused, and are waiting still."""
        now = time.time() if now is None else now
        counts = {"posted": 0, "refused": 0, "waiting": 0}
        with self._locked():
            book = gradebook.Gradebook(self.book_path)
            try:
                kept = posts_mod.Posts(book, self.assignment)
                due = kept.due(now)
                lineitem = ""
                if due:
                    try:
                        lineitem = self._lineitem(kept)
                    except (PlatformDown, Refused) as error:
                        for post in due:  # the line item first: without it no score goes, and none is refused
                            kept.mark(post, posts_mod.WAITING, f"no line item: {error}", now + backoff(post.tries))
                        log.warning("LTI: the assignment's line item could not be found or made now: %s", error)
                        due = []
                for post in due:
                    try:
                        self.services.post_score(lineitem, body(post))
                    except PlatformDown as error:
                        kept.mark(post, posts_mod.WAITING, str(error), now + backoff(post.tries))
                        log.warning("LTI: the LMS did not take a score now (%s); sent again in %.0f s", error, backoff(post.tries))
                    except Refused as error:
                        if str(error).startswith("404") and kept.context().get("lineitem_id") == lineitem:
                            kept.set_context({k: v for k, v in kept.context().items() if k != "lineitem_id"})  # removed in the LMS
                            kept.mark(post, posts_mod.WAITING, str(error), now)
                            continue
                        kept.mark(post, posts_mod.REFUSED, str(error))
                        counts["refused"] += 1
                        log.warning("LTI: the LMS refused the score of %s: %s", post.student, error)
                    else:
                        kept.mark(post, posts_mod.POSTED, "accepted")
                        counts["posted"] += 1
                counts["waiting"] = len(kept.waiting())
            finally:
                book.close()
        return counts

    def _lineitem(self, kept: posts_mod.Posts) -> str:
        """The assignment's line item: the launch's own, else the one found or made once and kept."""
        context = kept.context()
        if context.get("lineitem"):
            return context["lineitem"]
        if context.get("lineitem_id"):
            return context["lineitem_id"]
        lineitems = context.get("lineitems") or self.registration.lineitems
        if not lineitems:
            raise PlatformDown("no line items address yet: a launch from the course gives it (or [lti] lineitems)")
        maximum = max((p.maximum for p in kept.waiting()), default=100.0)
        found = self.services.lineitem(lineitems, context.get("resource_link", ""), self.assignment, self.label, maximum)
        kept.set_context({**context, "lineitem_id": found})
        return found


def body(post: posts_mod.Post) -> dict:
    """The AGS score of a post."""
    return {"userId": post.user_id, "scoreGiven": post.score, "scoreMaximum": post.maximum, "comment": post.comment,
            "timestamp": iso(post.timestamp), "activityProgress": "Completed", "gradingProgress": "FullyGraded"}


class Posting:
    """The server's poster, in a thread of its own: woken by each new class view the live
    pages make (a result, a join), every few seconds for retries, and every minute with a
    view of its own (`view_of()`): changes made beside the server (`grader override`,
    `extend`, `publish`) and due dates that pass."""

    def __init__(self, poster: Poster, view_of, every: float = 5.0, rebuild: float = 60.0):
        self.poster, self.view_of, self.every, self.rebuild = poster, view_of, every, rebuild
        self._view = None
        self._built = time.monotonic()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="grader-lti-posts", daemon=True)

    def start(self) -> "Posting":
        self._thread.start()
        return self

    def offer(self, view) -> None:
        self._view = view
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.poster.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            view, self._view = self._view, None
            try:
                if view is None and time.monotonic() - self._built > self.rebuild:
                    view = self.view_of()
                if view is not None:
                    self._built = time.monotonic()
                    self.poster.enqueue(view)
                self.poster.deliver()
            except Exception:  # noqa: BLE001 - kept in the gradebook: the next round tries again
                log.exception("LTI: could not post scores")


def context_of(book_path: str, assignment: str) -> dict:
    """The course's services as the last launch named them ({} if none came)."""
    book = gradebook.Gradebook(book_path)
    try:
        return posts_mod.Posts(book, assignment).context()
    finally:
        book.close()
