"""Secrets of the workshop server: personal links, the workshop code, form tokens.

A link's token is `<selector>.<verifier>`, both random. The server keeps the selector
(to find the row) and only a SHA-256 of the verifier, which it compares in constant
time: a copy of the queue's database gives no working link, and the time a wrong
token takes to refuse says nothing about the right one. Tokens are shown once, when
they are issued (a link CSV, the admin link printed at start).

A form's CSRF token is an HMAC, under the server's own secret, of what the form is
for (a student's uploads, a browser's join form): a page of another site cannot know
it, so it cannot make a student's browser post to the server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SELECTOR_BYTES, VERIFIER_BYTES = 9, 24  # 72 bits to find the row, 192 bits that must match
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector


def issue() -> tuple[str, str, str]:
    """A new token: (the token to hand out, its selector, the digest to store)."""
    selector, verifier = secrets.token_urlsafe(SELECTOR_BYTES), secrets.token_urlsafe(VERIFIER_BYTES)
    return f"{selector}.{verifier}", selector, digest(verifier)


def split(token: str) -> tuple[str, str] | None:
    """(selector, verifier) of a token as it came in, or None if it cannot be one."""
    selector, dot, verifier = token.partition(".")
    if not dot or not (0 < len(selector) <= 32 and 0 < len(verifier) <= 64):
        return None
    return selector, verifier


def digest(verifier: str) -> str:
    return hashlib.sha256(verifier.encode()).hexdigest()


def matches(stored_digest: str, verifier: str) -> bool:
    """Whether `verifier` is the one whose digest was stored, in constant time."""
    return hmac.compare_digest(stored_digest.encode(), digest(verifier).encode())


def new_secret() -> str:
    return secrets.token_hex(32)


def form_token(secret: str, purpose: str) -> str:
    """The CSRF token of a form made for `purpose` (e.g. "upload:<selector>")."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def form_token_ok(secret: str, purpose: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(form_token(secret, purpose).encode(), given.encode())


def workshop_code(length: int = 6) -> str:
    """A code to say out loud or show on the projector: 30 bits, unambiguous letters."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def same_code(expected: str, given: str) -> bool:
    """Codes compared without case, spaces or dashes, in constant time."""
    def norm(code: str) -> bytes:
        return "".join(code.split()).replace("-", "").upper().encode()

    return hmac.compare_digest(norm(expected), norm(given))
