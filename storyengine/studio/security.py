"""The studio's gate, in front of every route (pure ASGI, so server-sent events stream through).

1. Host: without a token (a loopback bind), the ``Host`` header must name localhost or the address
   the studio was started on: a page on another site cannot reach it by DNS rebinding.
2. Token: when the studio binds a non-local address it needs ``--token``; every request carries it
   (``?token=`` once, which sets an HttpOnly cookie and redirects; or ``Authorization: Bearer``).
3. State-changing requests: POST only, same origin (``Origin``, else ``Referer``, must be this
   studio), and at most ``max_body`` bytes; the CSRF token in the form is checked by the route
   (:func:`check_csrf`) before anything is read or written.
"""

from __future__ import annotations

import html
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
TOKEN_COOKIE = "storyengine_token"


class BodyTooLarge(Exception):
    pass


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")


def _refuse(status: int, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = (f"<!doctype html><meta charset=utf-8><title>storyengine studio: {status}</title>"
            f"<body style='font:15px system-ui;margin:40px'><h1>Refused</h1><p>{html.escape(message)}</p></body>").encode()
    return status, [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())], body


class Gate:
    """ASGI middleware: host, token, method, origin and body-size checks (see the module docstring)."""

    def __init__(self, app: Any, *, host: str, port: int, token: str | None, max_body: int) -> None:
        self.app, self.token, self.max_body = app, token, max_body
        names = {host.strip("[]")} | ({h.strip("[]") for h in LOCAL_HOSTS} if is_local(host) else set())
        self.hosts = {n for n in names} | {f"{n}:{port}" for n in names} | {f"[{n}]:{port}" for n in names if ":" in n}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        refusal = self.check(scope, headers, host)
        if refusal is None and self.token and not self._token_ok(headers):
            q = dict(parse_qsl(scope.get("query_string", b"").decode()))
            if scope["method"] == "GET" and secrets.compare_digest(q.get("token", ""), self.token):
                rest = urlencode({k: v for k, v in q.items() if k != "token"})
                path = "/" + scope["path"].lstrip("/")  # never `//host`: the redirect stays on this studio
                loc = path + (f"?{rest}" if rest else "")
                await send({"type": "http.response.start", "status": 303, "headers": [
                    (b"location", loc.encode()), (b"content-length", b"0"),
                    (b"set-cookie", f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())]})
                await send({"type": "http.response.body", "body": b""})
                return
            refusal = _refuse(401, "This studio needs its access token: open the address printed when it started "
                                   "(…/?token=…), or send `Authorization: Bearer TOKEN`.")
        if refusal is None and scope["method"] == "POST":
            refusal = self._post_refusal(headers, host, scope)
        if refusal is not None:
            status, hdrs, body = refusal
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge(f"request body over {self.max_body} bytes")
            return msg

        return await self.app(scope, counted, send)

    def check(self, scope: dict, headers: dict[str, str], host: str):
        if self.token is None and host not in self.hosts:  # with a token, the token is the check (any name of the machine)
            return _refuse(421, f"host {host!r} is not this studio's address")
        if scope["method"] not in ("GET", "HEAD", "POST"):
            return _refuse(405, f"method {scope['method']} is not used here")
        return None

    def _token_ok(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and secrets.compare_digest(auth[7:].strip(), self.token or ""):
            return True
        c = SimpleCookie()
        try:
            c.load(headers.get("cookie", ""))
        except Exception:
            return False
        got = c.get(TOKEN_COOKIE)
        return got is not None and secrets.compare_digest(got.value, self.token or "")

    def _post_refusal(self, headers: dict[str, str], host: str, scope: dict):
        origin = headers.get("origin")
        source = origin if origin and origin != "null" else headers.get("referer")
        if not source:
            return _refuse(403, "a change needs a same-origin request (no Origin or Referer header was sent)")
        parts = urlsplit(source)
        if parts.netloc != host:
            return _refuse(403, f"cross-origin request refused: {parts.scheme}://{parts.netloc} is not this studio")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return _refuse(413, f"upload too large: {int(length)} bytes (at most {self.max_body})")
        return None


def check_csrf(form: Any, expected: str) -> bool:
    """The form's ``csrf`` field equals this studio's token (constant-time)."""
    got = form.get("csrf") if form is not None else None
    return isinstance(got, str) and secrets.compare_digest(got, expected)
