"""API security: the bind rule, the bearer token, CORS and per-client rate limits."""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from vfxmocap.core.errors import InvalidParams

PUBLIC_PREFIX = "/studio/"  # the studio's static files


def is_public(path: str) -> bool:
    """The studio's page and files: served without the token (they hold no data; the page
    asks for the token and sends it with each API call)."""
    return path == "/" or path.startswith(PUBLIC_PREFIX)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """A server reachable from other machines must not be open to them."""
    if not is_loopback(host) and not token:
        raise InvalidParams(
            f"refusing to listen on {host} without an API token",
            hint="Set VFX_API_TOKEN (a long random string) or bind 127.0.0.1.",
        )


def token_matches(expected: str | None, authorization: str | None, query: str | None) -> bool:
    """True when no token is configured, or the request carries it: `Authorization: Bearer`
    or, for browsers' WebSockets (which cannot set headers), `?token=`."""
    if not expected:
        return True
    given = None
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    elif query:
        given = query
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _loopback_name(host: str) -> bool:
    if host.startswith("["):  # [::1]:8420
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:  # 127.0.0.1:8420, localhost:8420
        host = host.split(":")[0]
    return is_loopback(host)


def local_only_refusal(host: str | None, origin: str | None, origins: list[str]) -> str | None:
    """Without a token, the server answers only to this machine's own clients. Two browser
    attacks reach a loopback server anyway: a page on another site (its Origin tells), and
    DNS rebinding (a foreign name in Host). Returns why a request is refused, or None."""
    if host is not None and not _loopback_name(host):
        return f"this server answers only to localhost without a token (Host: {host})"
    if origin is not None and origin not in origins:
        origin_host = urlsplit(origin).hostname or ""
        if not is_loopback(origin_host):
            return f"requests from {origin} are not allowed (add it to VFX_CORS_ORIGINS)"
    return None


async def websocket_allowed(websocket: WebSocket, token: str | None, origins: list[str]) -> bool:
    """Check a WebSocket before accepting it (the token, or without one the local-only
    rule); refuse with 1008 (policy) if it fails. Failed tokens count against the client's
    address as on HTTP (the app's `auth_failures` limiter)."""
    if not token:
        why = local_only_refusal(
            websocket.headers.get("host"), websocket.headers.get("origin"), origins
        )
        if why is not None:
            await websocket.close(code=1008, reason=why[:120])
            return False
        return True
    if token_matches(
        token, websocket.headers.get("authorization"), websocket.query_params.get("token")
    ):
        return True
    failures: RateLimiter | None = getattr(websocket.app.state, "auth_failures", None)
    address = client_address(websocket.scope)
    if failures is not None and failures.blocked(address):
        await websocket.close(code=1008, reason="too many failed authentications; wait")
        return False
    if failures is not None:
        failures.allow(address)
    await websocket.close(code=1008, reason="a valid API token is required")
    return False


def client_address(scope: Scope) -> str:
    """The client a request comes from, as limits count it: its address, never a header it
    chose; an IPv6 client by its /64, the block a single host is usually given (one host
    has billions of addresses in it). Failed tokens and live streams count per this."""
    host = (scope.get("client") or ("unknown", 0))[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if address.version == 6 and not address.is_loopback:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def client_key(scope: Scope) -> str:
    """Whose rate-limit bucket a request draws on: its `client_address` (a random
    Authorization header per request would be a fresh bucket each time). Loopback clients
    (the studio, the CLI, scripts: all 127.0.0.1) get one bucket per connection, so one
    busy local client does not throttle the others."""
    host, port = scope.get("client") or ("unknown", 0)
    if is_loopback(host):
        return f"{host}:{port}"
    return client_address(scope)


class RateLimiter:
    """A token bucket per client: `rate` requests per second, bursts up to `burst`.
    Remembers at most `max_clients` clients (least recently seen forgotten first)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, float(burst), max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str) -> tuple[bool, float]:
        """Take one token: (allowed, seconds until the next request would be)."""
        return self._take(client, 1.0)

    def blocked(self, client: str) -> bool:
        """Whether the client's bucket is empty now, without taking from it."""
        return not self._take(client, 0.0)[0]

    def _take(self, client: str, cost: float) -> tuple[bool, float]:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= cost
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return allowed, 0.0 if allowed else (1.0 - tokens) / self.rate


class GuardMiddleware:
    """Token and rate limit on every HTTP request, as plain ASGI (Starlette's
    BaseHTTPMiddleware costs a task and a stream per request). WebSockets check the token
    themselves before accepting (`websocket_allowed`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        origins: list[str],
        limiter: RateLimiter,
        auth_failures: RateLimiter,
        upload_max_bytes: int,
        body_max_bytes: int,
    ) -> None:
        self.app, self.token, self.origins, self.limiter = app, token, origins, limiter
        self.auth_failures = auth_failures
        self.upload_max_bytes, self.body_max_bytes = upload_max_bytes, body_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.token:
            why = local_only_refusal(headers.get("host"), headers.get("origin"), self.origins)
            if why is not None:
                hint = "Use http://127.0.0.1, or set VFX_API_TOKEN to serve other machines."
                await error_response(403, "forbidden", why, hint)(scope, receive, send)
                return
        elif scope["method"] != "OPTIONS" and not is_public(scope["path"]):
            refusal = self._authenticate(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        allowed, wait = self.limiter.allow(client_key(scope))
        if not allowed:
            await _too_many("too many requests", wait)(scope, receive, send)
            return
        refusal = self._body_refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authenticate(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """None when the request carries the token: a valid token always passes, so clients
        behind one NAT address are not locked out by another's failures. Failures are
        counted per `client_address` (whatever the port or header) and, past a small burst,
        answered 429: only unauthenticated attempts are held to the failure limiter's rate
        (and every request to the rate limiter's, which guesses draw on too)."""
        query = QueryParams(scope.get("query_string", b"")).get("token")
        if token_matches(self.token, headers.get("authorization"), query):
            return None
        address = client_address(scope)
        self.limiter.allow(client_key(scope))
        if self.auth_failures.blocked(address):
            _, wait = self.auth_failures.allow(address)
            return _too_many("too many failed authentications", wait)
        self.auth_failures.allow(address)
        return error_response(
            401,
            "unauthorized",
            "a valid API token is required",
            "Send 'Authorization: Bearer <VFX_API_TOKEN>'.",
            {"WWW-Authenticate": "Bearer"},
        )

    def _body_refusal(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """Bodies declare their size, and a size within the limit, before a byte is read:
        a JSON body is parsed whole on the event loop, and the multipart parser would spool
        any amount to disk. Uploads have their own, larger limit."""
        upload = scope["path"] == "/api/uploads"
        lengths = headers.getlist("content-length")
        if (lengths and "transfer-encoding" in headers) or len(lengths) > 1:
            # Two framings of one body: a proxy and this server could split it differently
            # and read a second, smuggled request out of it (RFC 9112 6.3).
            return error_response(
                400,
                "input_error",
                "the request declares its body's size twice (Content-Length with "
                "Transfer-Encoding, or two Content-Lengths)",
                "Send one Content-Length and no Transfer-Encoding.",
            )
        length = lengths[0] if lengths else None
        if length is None:
            if not upload and "transfer-encoding" not in headers:
                return None  # no body at all
            hint = "Send the body with a Content-Length (not chunked)."
            return error_response(411, "input_error", "a request body needs a Content-Length", hint)
        if not length.isdigit():
            return error_response(400, "input_error", "a malformed Content-Length", "Fix it.")
        if upload:
            if int(length) > self.upload_max_bytes + 64 * 1024:  # the multipart envelope
                return upload_too_large(self.upload_max_bytes)
        elif int(length) > self.body_max_bytes:
            return error_response(
                413,
                "input_error",
                f"the request body is larger than {self.body_max_bytes // 1024} KB",
                "Send files as uploads (POST /api/uploads) and refer to them by id, or raise "
                "VFX_BODY_MAX_KB on the server.",
            )
        return None


def error_response(
    status: int,
    code: str,
    message: str,
    hint: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The API's one error shape: {"error": {code, message, hint, ...}}."""
    body = {"error": {"code": code, "message": message, "hint": hint, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def _too_many(message: str, wait: float) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(wait)))}
    return error_response(429, "rate_limited", message, f"Retry in {wait:.2f} s.", headers)


def upload_too_large(limit: int) -> JSONResponse:
    return error_response(
        413,
        "input_error",
        f"the upload is larger than {limit / 2**20:.0f} MB",
        "Upload a smaller file, or raise VFX_UPLOAD_MAX_MB on the server.",
    )
