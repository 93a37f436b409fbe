"""An LTI 1.3 platform (a learning-management system in miniature) on 127.0.0.1, for
testing the grader's LTI tool end to end.

`Platform` plays the LMS for one registration of the tool. It launches a member of its
course at the tool (third-party login initiation, the tool's OIDC authentication request,
an id_token posted to the tool), and it serves LTI Advantage to the tool: OAuth 2
client-credentials tokens, Assignment and Grade Services (line items and scores) and
Names and Role Provisioning Services (the roster). It checks what a strict platform checks:

- the tool's authentication request: response_type=id_token, scope=openid,
  response_mode=form_post, prompt=none, its client_id, the registered launch URL as
  redirect_uri, the login_hint and lti_message_hint this platform sent, a nonce and a state;
- the tool's client assertion at /token: signed by a key of the tool's JWKS
  (tool_url + "/lti/jwks", fetched afresh for each request), iss = sub = client_id,
  aud = the token URL, an exp still to come, a jti never used before; then the scope of
  the access token at each service (401 without a valid token, 403 without the scope);
- line items (a label, a scoreMaximum above 0) and scores (their media type, userId,
  scoreGiven <= scoreMaximum, activityProgress, gradingProgress, a timestamp with a time
  zone); a score for anyone but a learner of the course is refused (422), and a score
  whose timestamp is no later than the last one accepted for that user and line item is
  dropped without a word (200), as LMSs do;
- URLs as given: line-item URLs carry a query string (as Canvas's do), so a tool must put
  "/scores" at the end of the path, before the query; anything else is a 404.

It can also forge a launch for the tool to refuse (`launch(forge=...)`), post an old
id_token again (`launch(replay_of=...)`), hand out the roster two members a page, and go
down (`down`: its services answer 503). What it accepted and refused is kept for tests to
assert on (`scores`, `refused`, `lineitems`, `access_tokens()`, `last_id_token`).

Built on lti1p3platform: its Registration holds the platform's keys and the tool's, its
login initiation makes the URL that starts a launch, its message launch makes and signs the
id_token, and its platform configuration checks the client assertion's signature and
issues and checks access tokens. The AGS and NRPS endpoints, which it leaves to a web
framework, are written here with Starlette.
"""

from __future__ import annotations

import html
import json
import secrets
import socket
import threading
import time
from datetime import datetime
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform.exceptions import LtiException, MissingRequiredClaim, UnsupportedGrantType
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.membership import Context, ContextMembership, Status
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration
from lti1p3platform.request import Request as LtiRequest
from lti1p3platform.score import ActivityProgress, GradeProgress
from lti1p3platform.utils import dataclass_to_dict
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
TEACHING_ASSISTANT = "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"

SCOPE_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
SCOPE_RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCOPE_MEMBERSHIP = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"

AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"

LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

COURSE_LABEL, COURSE_TITLE, LINK_TITLE = "ML101", "Deep learning workshop", "Lab 1"
LINEITEM_QUERY = "type=grades"  # on every line-item URL, as Canvas does
LINEITEM_FILTERS = {"resource_link_id": "resourceLinkId", "resource_id": "resourceId", "tag": "tag"}
ROSTER_PAGE = 2  # members per NRPS page: a roster of three already takes two pages
MAX_REDIRECTS = 5  # the tool's own redirects before the one to auth_url
FORGES = ("signature", "audience", "deployment", "expired", "issuer", "nonce", "message_type", "version", "azp")
FORGED_CLAIMS = {
    "audience": {"aud": "someone-else", "azp": "someone-else"},  # a token made for another tool
    "message_type": {"https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiDeepLinkingRequest"},
    "version": {"https://purl.imsglobal.org/spec/lti/claim/version": "1.1"},
    "azp": {"aud": ["someone-else", "grader-tool"], "azp": "someone-else"},  # for several tools, authorized for another
    "deployment": {DEPLOYMENT_CLAIM: "deployment-other"},
    "issuer": {"iss": "http://evil.example"},
}


class _Config(LTI1P3PlatformConfAbstract):
    """lti1p3platform's platform, for its one registration."""

    def init_platform_config(self, registration: Registration) -> None:
        self._registration = registration

    def get_registration_by_params(self, **kwargs) -> Registration:
        return self._registration


class _LoginInitiation(OIDCLoginAbstract):
    """lti1p3platform's third-party login initiation: the tool URL that starts a launch."""

    def set_lti_message_hint(self, **kwargs) -> None:
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url: str) -> str:
        return url


class _AuthenticationRequest(LtiRequest):
    """The tool's authentication request (its parameters), as lti1p3platform reads one."""

    def build_metadata(self, request: dict) -> dict:
        return {"method": "GET", "get_data": request, "form_data": {}}


class _Launch(LTIAdvantageMessageLaunchAbstract):
    """lti1p3platform's resource-link launch, its id_token signed here so that it can be forged."""

    def __init__(self, params: dict, config: _Config, forge: str | None, impostor_key: str):
        super().__init__(_AuthenticationRequest(params), config)
        self._forge = forge
        self._impostor_key = impostor_key

    def generate_launch_request(self) -> dict:
        """The id_token (forged as asked) and state to post to the tool."""
        message, state = self.get_launch_data()
        now = int(time.time())
        message.update(iat=now, exp=now + self.id_token_expiration)
        key = self._registration.get_platform_private_key()
        if self._forge == "signature":
            key = self._impostor_key  # signed by another key that claims the platform's kid
        elif self._forge == "expired":
            message.update(iat=now - 3900, exp=now - 3600)
        elif self._forge == "nonce":
            message["nonce"] = "not-" + secrets.token_urlsafe(12)
        elif self._forge:
            message.update(FORGED_CLAIMS[self._forge])
        kid = self._registration.get_jwks()[0]["kid"]  # of the public key: get_kid() parses the private one, slowly
        token = Registration.encode_and_sign(message, key, headers={"kid": kid})
        return {"state": state, "id_token": token}

    def render_launch_form(self, launch_data: dict, **kwargs) -> dict:
        return launch_data


def _rsa_key_pair() -> tuple[str, str]:
    """A new 2048-bit RSA key: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


def _timestamp(value) -> datetime | None:
    """An ISO 8601 date and time with a time zone, parsed; None for anything else."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _is_number(value) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _score_problem(score: dict) -> str | None:
    """What makes a score invalid under AGS 2.0 (and scoreGiven above scoreMaximum), or None."""
    if not isinstance(score.get("userId"), str) or not score["userId"]:
        return "no userId"
    activities = [progress.value for progress in ActivityProgress]
    if score.get("activityProgress") not in activities:
        return f"activityProgress {score.get('activityProgress')!r} is not one of {activities}"
    gradings = [progress.value for progress in GradeProgress]
    if score.get("gradingProgress") not in gradings:
        return f"gradingProgress {score.get('gradingProgress')!r} is not one of {gradings}"
    if _timestamp(score.get("timestamp")) is None:
        return f"timestamp {score.get('timestamp')!r} is not an ISO 8601 date and time with a time zone"
    if "scoreGiven" in score:
        given, maximum = score["scoreGiven"], score.get("scoreMaximum")
        if not _is_number(given) or given < 0:
            return f"scoreGiven {given!r} is not a number of at least 0"
        if not _is_number(maximum) or maximum <= 0:
            return f"scoreMaximum {maximum!r} is not a number above 0"
        if given > maximum:
            return f"scoreGiven {given} is above scoreMaximum {maximum}"
    return None


def _lineitem_problem(item) -> str | None:
    """What makes a new line item invalid, or None."""
    if not isinstance(item, dict):
        return "the body is not a JSON object"
    if not isinstance(item.get("label"), str) or not item["label"].strip():
        return "no label"
    if not _is_number(item.get("scoreMaximum")) or item["scoreMaximum"] <= 0:
        return f"scoreMaximum {item.get('scoreMaximum')!r} is not a number above 0"
    return None


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An OAuth 2 error answer (RFC 6749, section 5.2)."""
    return JSONResponse({"error": error, "error_description": description}, status)


class Platform:
    """An LTI 1.3 platform on 127.0.0.1, in a thread (uvicorn), for one tool registration.

    Its port is taken when it is made (so `url` and the other addresses are known before it
    starts); `with Platform(...) as platform:` serves until the block ends."""

    def __init__(self, tool_url: str, client_id: str = "grader-tool", deployment_id: str = "deployment-1",
                 course: str = "course-1", resource_link: str = "lab-1"):
        self.tool_url = tool_url.rstrip("/")
        self.client_id, self.deployment_id = client_id, deployment_id
        self.course, self.resource_link = course, resource_link
        # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on its connections (else 40 ms a response)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.auth_url = self.url + "/auth"
        self.token_url = self.url + "/token"
        self.jwks_url = self.url + "/jwks"
        self._lineitems_path = f"/courses/{course}/lineitems"
        self.lineitems_url = f"{self.url}{self._lineitems_path}?{LINEITEM_QUERY}"
        self.memberships_url = f"{self.url}/courses/{course}/memberships"

        self.members: list[dict] = []
        self.down = False
        self.scores: list[dict] = []
        self.refused: list[dict] = []
        self.lineitems: dict[str, dict] = {}
        self.last_id_token: str | None = None
        self.tool_keys: dict | None = None  # the tool's public keys pasted into the registration (None: read from its JWKS URL)
        self._tokens: list[dict] = []  # the claims of each access token issued
        self._jtis: set[str] = set()  # of the client assertions accepted
        self._logins: dict[str, str] = {}  # lti_message_hint -> user_id, for each launch under way
        self._last_scored: dict[tuple[str, str], datetime] = {}  # (line item id, userId) -> timestamp
        self._token_lock = threading.Lock()  # lti1p3platform keeps the assertion being checked on its object

        private_key, public_key = _rsa_key_pair()
        self._impostor_key, _ = _rsa_key_pair()
        self._registration = (
            Registration()
            .set_iss(self.url)
            .set_client_id(client_id)
            .set_deployment_id(deployment_id)
            .set_oidc_login_url(self.tool_url + "/lti/login")
            .set_launch_url(self.tool_url + "/lti/launch")
            .set_tool_key_set_url(self.tool_url + "/lti/jwks")
            .set_platform_private_key(private_key)
            .set_platform_public_key(public_key)
        )
        self._config = _Config(registration=self._registration)
        self._server = uvicorn.Server(uvicorn.Config(self._app(), log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"lti-platform {self.url}", daemon=True)

    def __enter__(self) -> Platform:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the LTI platform at {self.url} did not start")
            time.sleep(0.01)
        httpx.get(self.jwks_url, trust_env=False).raise_for_status()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    # --- for tests ---------------------------------------------------------------------

    def add_member(self, user_id: str, name: str, roles: list[str], email: str = "") -> None:
        """Enrol someone in the course."""
        self.members.append({"user_id": user_id, "name": name, "email": email, "roles": list(roles)})

    def access_tokens(self) -> list[dict]:
        """The claims of every access token issued, in order (their "scopes": space-separated)."""
        return [dict(claims) for claims in self._tokens]

    def login_url(self, user_id: str) -> str:
        """The tool's login-initiation URL that starts a launch of the member `user_id`
        (what the LMS's link sends a browser to; `launch` starts there too)."""
        hint = secrets.token_urlsafe(12)
        self._logins[hint] = user_id
        login = _LoginInitiation(None, self._config)
        login.set_lti_message_hint(hint=hint)
        return login.initiate_login(user_id)

    def launch(self, client: httpx.Client, user_id: str, forge: str | None = None,
               replay_of: str | None = None) -> httpx.Response:
        """The whole launch of the member `user_id` through `client` (cookies kept, redirects
        followed here): login initiation at the tool, the tool's redirect to auth_url checked
        as a platform must (ValueError if wrong), then the id_token and state POSTed to the
        tool's launch URL. Returns the tool's answer to that POST (not followed), or its answer
        to the login initiation if that was no redirect. `forge` makes a token the tool must
        refuse (one of FORGES); `replay_of` posts that id_token instead of a new one."""
        if forge is not None and forge not in FORGES:
            raise ValueError(f"forge {forge!r} is not one of {FORGES}")
        response = client.get(self.login_url(user_id), follow_redirects=False)
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            location = urljoin(str(response.url), response.headers["location"])
            if urlsplit(location)._replace(query="", fragment="").geturl() == self.auth_url:
                break
            response = client.get(location, follow_redirects=False)
        else:
            raise ValueError(f"the tool redirected {MAX_REDIRECTS} times without reaching {self.auth_url}")
        launch = self._authorize(urlsplit(location).query, forge)
        self.last_id_token = replay_of or launch["id_token"]
        return client.post(launch["launch_url"], data={"id_token": self.last_id_token, "state": launch["state"]},
                           follow_redirects=False)

    # --- the launch ----------------------------------------------------------------------

    def _authorize(self, query: str, forge: str | None = None) -> dict:
        """Check the tool's authentication request (the query string of its redirect to
        auth_url) and make the launch: {"launch_url", "id_token", "state"}. ValueError says
        what is wrong with the request."""
        given = parse_qs(query, keep_blank_values=True)
        repeated = sorted(name for name, values in given.items() if len(values) > 1)
        if repeated:
            raise ValueError(f"the authentication request repeats {repeated}")
        params = {name: values[0] for name, values in given.items()}
        expected = {"response_type": "id_token", "scope": "openid", "response_mode": "form_post",
                    "prompt": "none", "client_id": self.client_id,
                    "redirect_uri": self._registration.get_launch_url()}
        for name, value in expected.items():
            if params.get(name) != value:
                raise ValueError(f"the authentication request's {name} is {params.get(name)!r}, not {value!r}")
        for name in ("nonce", "state"):
            if not params.get(name):
                raise ValueError(f"the authentication request has no {name}")
        user_id = self._logins.pop(params.get("lti_message_hint", ""), None)
        if user_id is None:
            raise ValueError("the authentication request's lti_message_hint is none this platform sent, "
                             "or one already used")
        if params.get("login_hint") != user_id:
            raise ValueError(f"the authentication request's login_hint is {params.get('login_hint')!r}, "
                             f"not {user_id!r}")
        member = next((m for m in self.members if m["user_id"] == user_id), None)
        if member is None:
            raise ValueError(f"{user_id!r} is not a member of the course")

        launch = _Launch(params, self._config, forge, self._impostor_key)
        launch.set_user_data(user_id, member["roles"], member.get("name"), member.get("email"))
        launch.set_resource_link_claim(self.resource_link, title=LINK_TITLE)
        launch.set_launch_context_claim(self.course, context_title=COURSE_TITLE, context_label=COURSE_LABEL)
        # lti1p3platform's set_ags names the lineitem scope or the readonly one, not both: the claim is made here
        launch.set_extra_claims({AGS_CLAIM: {
            "scope": [SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY, SCOPE_RESULT_READONLY, SCOPE_SCORE],
            "lineitems": self.lineitems_url,
        }})
        launch.set_nrps(self.memberships_url)
        return launch.lti_launch()

    async def _auth(self, request: Request) -> Response:
        """GET /auth: the OIDC authorization endpoint, for a browser: a form that posts the
        launch to the tool by itself (400 if the authentication request is wrong)."""
        try:
            launch = self._authorize(request.url.query)
        except ValueError as error:
            return PlainTextResponse(str(error), 400)
        self.last_id_token = launch["id_token"]
        fields = "".join(f'<input type="hidden" name="{name}" value="{html.escape(launch[name])}">'
                         for name in ("id_token", "state"))
        return HTMLResponse(f'<!doctype html><title>Launching…</title>'
                            f'<form method="post" action="{html.escape(launch["launch_url"])}">{fields}'
                            f'<noscript><button>Continue</button></noscript></form>'
                            f'<script>document.forms[0].submit()</script>')

    async def _jwks(self, request: Request) -> Response:
        """GET /jwks: the platform's public key."""
        return JSONResponse(self._config.get_jwks())

    # --- tokens ---------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        """POST /token: an access token for a client-credentials grant with a JWT assertion."""
        if self.down:
            return PlainTextResponse("the platform is down", 503)
        form = dict(await request.form())
        return await run_in_threadpool(self._issue_token, form)  # fetching the tool's keys blocks

    def _issue_token(self, form: dict) -> Response:
        """Check the request and its client assertion (RFC 7523, the LTI security framework)
        and answer an access token with the scopes asked for that the platform knows."""
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return _oauth_error(400, "invalid_request", f"client_assertion_type is not {ASSERTION_TYPE}")
        with self._token_lock:
            self._registration.set_tool_key_set(self.tool_keys)  # None: fetch them afresh (the tool may have rotated them)
            try:
                answer = self._config.get_access_token(form)  # the form's fields and the assertion's signature
                assertion = self._config.tool_validate_and_decode(form["client_assertion"])
            except MissingRequiredClaim as error:
                return _oauth_error(400, "invalid_request", str(error))
            except UnsupportedGrantType:
                return _oauth_error(400, "unsupported_grant_type", "grant_type is not client_credentials")
            except (LtiException, jwt.PyJWTError) as error:
                return _oauth_error(401, "invalid_client", f"the client assertion does not verify: {error}")
            problem = self._assertion_problem(assertion)
            if problem:
                return _oauth_error(401, "invalid_client", problem)
            if not answer["scope"]:
                return _oauth_error(400, "invalid_scope", f"none of the scopes {form['scope']!r} is granted")
            self._jtis.add(assertion["jti"])
            self._tokens.append(jwt.decode(answer["access_token"], self._registration.get_platform_public_key(),
                                           algorithms=["RS256"]))
        return JSONResponse(answer)

    def _assertion_problem(self, claims: dict) -> str | None:
        """What is wrong with a client assertion's claims (its signature already checked), or None."""
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return f"iss and sub must both be the client_id {self.client_id!r}"
        audience = claims.get("aud")
        if self.token_url not in (audience if isinstance(audience, list) else [audience]):
            return f"aud {audience!r} is not the token URL {self.token_url}"
        if not _is_number(claims.get("exp")) or claims["exp"] <= time.time():
            return "no exp to come"
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            return "no jti"
        if claims["jti"] in self._jtis:
            return f"jti {claims['jti']!r} was used before (a replay)"
        return None

    def _refusal(self, request: Request, *scopes: str) -> Response | None:
        """503 if the platform is down, 401 without a valid access token, 403 if the token has
        none of `scopes`; None when the request may go on."""
        if self.down:
            return PlainTextResponse("the platform is down", 503)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return PlainTextResponse("no access token", 401, headers={"WWW-Authenticate": "Bearer"})
        try:
            granted = self._config.validate_token(token.strip(), allowed_scopes=list(scopes))
        except (LtiException, jwt.PyJWTError) as error:
            return PlainTextResponse(f"invalid access token: {error}", 401, headers={"WWW-Authenticate": "Bearer"})
        if not granted:
            return PlainTextResponse(f"the access token has none of the scopes {list(scopes)}", 403)
        return None

    # --- Assignment and Grade Services --------------------------------------------------

    async def _lineitems(self, request: Request) -> Response:
        """GET: the line items (filtered by resource_link_id, resource_id, tag); POST: a new one."""
        if request.method == "GET":
            refusal = self._refusal(request, SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY)
            if refusal:
                return refusal
            wanted = {field: request.query_params[param] for param, field in LINEITEM_FILTERS.items()
                      if param in request.query_params}
            items = [item for item in self.lineitems.values()
                     if all(item.get(field) == value for field, value in wanted.items())]
            return JSONResponse(items, media_type=LINEITEMS_TYPE)
        refusal = self._refusal(request, SCOPE_LINEITEM)
        if refusal:
            return refusal
        try:
            item = json.loads(await request.body())
        except ValueError:
            item = None
        problem = _lineitem_problem(item)
        if problem is None and item.get("resourceLinkId", self.resource_link) != self.resource_link:
            problem = f"resourceLinkId {item['resourceLinkId']!r} is no resource link of the course"
        if problem:
            return PlainTextResponse(f"invalid line item: {problem}", 400)
        item_id = f"{self.url}{self._lineitems_path}/{len(self.lineitems) + 1}?{LINEITEM_QUERY}"
        self.lineitems[item_id] = item = {**item, "id": item_id}
        return JSONResponse(item, 201, media_type=LINEITEM_TYPE)

    def _item(self, request: Request) -> dict | None:
        """The line item whose id is the request's URL (path and query string), or None."""
        if request.url.query != LINEITEM_QUERY:
            return None
        return self.lineitems.get(f"{self.url}{self._lineitems_path}/{request.path_params['n']}?{LINEITEM_QUERY}")

    async def _lineitem(self, request: Request) -> Response:
        """GET: one line item. A POST here is a score sent to "/scores" after the query
        string ("…/lineitems/1?type=grades/scores"): not found."""
        if request.method == "POST":
            return PlainTextResponse("not found: a line item's scores are at its path + /scores, "
                                     "before its query string", 404)
        refusal = self._refusal(request, SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY)
        if refusal:
            return refusal
        item = self._item(request)
        if item is None:
            return PlainTextResponse("no such line item", 404)
        return JSONResponse(item, media_type=LINEITEM_TYPE)

    async def _score(self, request: Request) -> Response:
        """POST: a score for a line item. Accepted (200) into `scores`; refused (415, 400, or 422
        for a non-learner) or dropped (200, a stale timestamp) into `refused`."""
        refusal = self._refusal(request, SCOPE_SCORE)
        if refusal:
            return refusal
        item = self._item(request)
        if item is None:
            return PlainTextResponse("no such line item", 404)
        try:
            score = json.loads(await request.body())
        except ValueError:
            score = None
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != SCORE_TYPE:
            return self._refuse(item, score, 415, f"media type {media_type!r}, not {SCORE_TYPE}")
        if not isinstance(score, dict):
            return self._refuse(item, score, 400, "invalid score: the body is not a JSON object")
        problem = _score_problem(score)
        if problem:
            return self._refuse(item, score, 400, f"invalid score: {problem}")
        if not any(m["user_id"] == score["userId"] and LEARNER in m["roles"] for m in self.members):
            return self._refuse(item, score, 422, "not a student")
        key, moment = (item["id"], score["userId"]), _timestamp(score["timestamp"])
        if key in self._last_scored and moment <= self._last_scored[key]:
            self._record_refusal(item, score, "stale timestamp")
            return Response(status_code=200)  # as an accepted score's: the tool is not told
        self._last_scored[key] = moment
        self.scores.append({"lineitem": item["id"], **score})
        return Response(status_code=200)

    def _refuse(self, item: dict, score, status: int, why: str) -> Response:
        """Keep a refused score in `refused`, and answer why."""
        self._record_refusal(item, score, why)
        return PlainTextResponse(f"score refused: {why}", status)

    def _record_refusal(self, item: dict, score, why: str) -> None:
        """Keep a score not accepted in `refused`, with why."""
        self.refused.append({"lineitem": item["id"], **(score if isinstance(score, dict) else {}), "why": why})

    # --- Names and Role Provisioning Services --------------------------------------------

    async def _memberships(self, request: Request) -> Response:
        """GET: the roster (NRPS 2.0), ROSTER_PAGE members a page, a Link header to the next."""
        refusal = self._refusal(request, SCOPE_MEMBERSHIP)
        if refusal:
            return refusal
        page = request.query_params.get("page", "1")
        if not page.isdigit() or int(page) < 1:
            return PlainTextResponse(f"page {page!r} is not a page number", 400)
        start = (int(page) - 1) * ROSTER_PAGE
        roster = self.members[start:start + ROSTER_PAGE]
        container = dataclass_to_dict(ContextMembership(
            id=str(request.url), context=Context(id=self.course, label=COURSE_LABEL, title=COURSE_TITLE)))
        container["members"] = [
            {"status": Status.ACTIVE.value, "user_id": m["user_id"], "roles": m["roles"],
             **{field: m[field] for field in ("name", "email") if m.get(field)}}
            for m in roster]
        headers = {}
        if start + ROSTER_PAGE < len(self.members):
            following = urlencode({**request.query_params, "page": int(page) + 1})
            headers["Link"] = f'<{self.memberships_url}?{following}>; rel="next"'
        return JSONResponse(container, headers=headers, media_type=MEMBERSHIPS_TYPE)

    def _app(self) -> Starlette:
        """The platform's web app: its endpoints."""
        items = self._lineitems_path
        return Starlette(routes=[
            Route("/auth", self._auth),
            Route("/jwks", self._jwks),
            Route("/token", self._token, methods=["POST"]),
            Route(items, self._lineitems, methods=["GET", "POST"]),
            Route(items + "/{n:int}", self._lineitem, methods=["GET", "POST"]),
            Route(items + "/{n:int}/scores", self._score, methods=["POST"]),
            Route(f"/courses/{self.course}/memberships", self._memberships),
        ])
