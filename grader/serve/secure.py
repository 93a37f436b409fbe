"""The headers every response of the workshop server carries, errors included."""

from __future__ import annotations

HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cache-control": "no-store",
}
STRICT = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    """ASGI wrapper: every response (errors included) gets HEADERS and, unless its route
    set a Content-Security-Policy of its own, the strictest one."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                given = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in HEADERS]
                if not any(k.lower() == b"content-security-policy" for k, _ in given):
                    given.append((b"content-security-policy", STRICT.encode()))
                message = {**message, "headers": given + [(k.encode(), v.encode()) for k, v in HEADERS.items()]}
            await send(message)

        await self.app(scope, receive, sending)
