"""The edge: one pure-ASGI middleware wrapped around everything, including the 500 handler.

Per request it assigns the request id and trace context, makes the CSP nonce, resolves the
client address, enforces body size, content type, rate limit and timeout, adds the security
headers to every response, and records metrics and one JSON access-log line. Whatever fails
in it or under it, the caller gets the standard JSON error with those headers. It is a single
layer because each extra ASGI layer costs measurable throughput (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

from fastapi import HTTPException

from service.errors import error_body, log_failure
from service.failures import classify
from service.logs import AccessLog
from service.state import AppState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("service.edge")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LOOPBACK = frozenset({"127.0.0.1", "::1"})
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    # Every answer is per caller or per moment (tokens, orders, stock, probes): no cache
    # between here and the client may keep one.
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_CSP = (
    "default-src 'none'; script-src 'nonce-{0}'; style-src 'nonce-{0}'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


# (status, message, extra headers) of an answer the edge gives instead of the app.
Refusal = tuple[int, str, list[tuple[bytes, bytes]]]


class StaticRoute(NamedTuple):
    """What a framework route leaves in scope["route"]: the template for metrics and logs."""

    path: str


class BodyTooLarge(HTTPException):
    """Raised from `receive`; FastAPI re-raises HTTPExceptions from body parsing as they are,
    so the error handler answers 413 instead of a generic 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def trace_context(header: str | None, fresh: bytes) -> tuple[str, str | None]:
    """(trace id, parent span id) from a W3C traceparent, or a fresh trace from `fresh`."""
    if header:
        match = _TRACEPARENT.match(header.strip())
        if match and match.group(1) != "0" * 32 and match.group(2) != "0" * 16:
            return match.group(1), match.group(2)
    return fresh.hex(), None


def route_class(path: str) -> str:
    if path.startswith("/api/_internal/"):
        return "internal"
    if path.startswith("/api/auth/"):
        return "auth"
    return "api"


class Edge:
    def __init__(
        self, app: ASGIApp, state: AppState, static: dict[str, bytes] | None = None
    ) -> None:
        self.app = app
        self.state = state
        # JSON bodies answered here, after every edge control and before the framework:
        # the liveness probe, which load balancers call every few seconds per replica.
        self.static = static or {}
        s = state.settings
        self.timeout_s = s.request_timeout_ms / 1000
        self.max_body = s.max_body_bytes
        self.limits = {
            "auth": s.rate_limit_auth_per_minute,
            "api": s.rate_limit_api_per_minute,
            "internal": s.rate_limit_internal_per_minute,
        }
        # A limiter that waits on I/O must run inside the request's deadline; one that never
        # suspends needs no timer, which keeps the liveness path free of one.
        self.limiter_waits = state.limiter.waits
        self._trusted: dict[str, bool] = {}
        self.access_log = AccessLog()

    def _is_trusted(self, host: str) -> bool:
        known = self._trusted.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
                known = any(address in net for net in self.state.settings.proxy_networks)
            except ValueError:
                known = False
            if len(self._trusted) < 1024:
                self._trusted[host] = known
        return known

    def is_health_checker(self, peer: str, forwarded_for: str | None) -> bool:
        """The load balancer's own health checks, exempt from the per-source limit.

        A proxy adds X-Forwarded-For to every request it forwards (Caddy and the ALB both
        do), but its own health checks carry none. So a trusted proxy as the direct peer with
        no X-Forwarded-For is the load balancer itself; no client can make a request arrive
        that way through it. A loopback peer with no X-Forwarded-For is a process on this
        host (the container's health check on AWS), inside the same trust boundary. The
        User-Agent proves nothing and is not consulted.
        """
        if forwarded_for is not None:
            return False
        return self._is_trusted(peer) or peer in _LOOPBACK

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """X-Forwarded-For counts only when the peer is a trusted proxy; then the client is
        the right-most address that is not itself a trusted proxy."""
        if not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = traceparent = forwarded = content_type = content_length = None
        chunked = False
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
            elif key == b"traceparent":
                traceparent = value.decode("latin-1")
            elif key == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
            elif key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"content-length":
                content_length = value
            elif key == b"transfer-encoding":
                chunked = True
        # One urandom read per request: span id, nonce, and request/trace ids when needed.
        entropy = os.urandom(56)
        if request_id is None or not _REQUEST_ID.match(request_id):
            request_id = entropy[40:56].hex()
        trace_id, parent_span = trace_context(traceparent, entropy[24:40])
        span_id = entropy[:8].hex()
        nonce = base64.urlsafe_b64encode(entropy[8:24]).rstrip(b"=").decode()
        peer = scope["client"][0] if scope.get("client") else "unknown"
        client = self.client_address(peer, forwarded)
        path: str = scope["path"]
        klass = route_class(path)
        request_state = scope.setdefault("state", {})
        request_state.update(
            request_id=request_id,
            trace_id=trace_id,
            span_id=span_id,
            csp_nonce=nonce,
            client_ip=client,
        )

        extra_headers = [
            *SECURITY_HEADERS,
            (b"content-security-policy", _CSP.format(nonce).encode()),
            (b"x-request-id", request_id.encode()),
            (b"traceparent", f"00-{trace_id}-{span_id}-01".encode()),
        ]
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        metrics = self.state.metrics
        metrics.in_flight.inc()
        method: str = scope["method"]
        limit_key = (
            f"{klass}:{client}"
            if klass != "internal" or not self.is_health_checker(peer, forwarded)
            else None
        )
        refusal = (
            self._body_refusal(content_type, content_length, chunked)
            if method in _BODY_METHODS
            else None
        )
        static = self.static.get(path) if method in ("GET", "HEAD") else None
        # One deadline over everything the request does, the rate limiter's query included.
        # Liveness answered here, with no limiter query ahead of it, needs none.
        deadline = (
            asyncio.timeout(self.timeout_s)
            if static is None or (limit_key is not None and self.limiter_waits)
            else None
        )
        responding = self._respond(
            scope,
            receive,
            send_with_headers,
            klass,
            limit_key,
            refusal,
            static,
            extra_headers,
            request_id,
        )
        try:
            if deadline is None:
                await responding
            else:
                async with deadline:
                    await responding
        except Exception as exc:
            await self._failed(exc, deadline, scope, send_with_headers, request_id, status)
        finally:
            metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.observe(scope["method"], template, status or 500, elapsed)
            if self.state.settings.access_log:
                fields = {
                    "requestId": request_id,
                    "traceId": trace_id,
                    "spanId": span_id,
                    "parentSpanId": parent_span,
                    "method": scope["method"],
                    "route": template,
                    "path": path,
                    "status": status or 500,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client,
                }
                self.access_log.write(fields)

    async def _respond(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        klass: str,
        limit_key: str | None,
        refusal: Refusal | None,
        static: bytes | None,
        extra_headers: list[tuple[bytes, bytes]],
        request_id: str,
    ) -> None:
        if limit_key is not None:
            refusal = await self._rate_limit(klass, limit_key, extra_headers) or refusal
        if refusal is not None:
            code, message, headers = refusal
            await self._send_error(send, code, message, request_id, headers)
        elif static is not None:
            scope["route"] = StaticRoute(scope["path"])
            await self._send_static(send, static, scope["method"] == "HEAD")
        else:
            await self.app(scope, self._limited_receive(receive), send)

    async def _rate_limit(
        self, klass: str, key: str, extra_headers: list[tuple[bytes, bytes]]
    ) -> Refusal | None:
        limit = self.limits[klass]
        decision = await self.state.limiter.hit(key, limit, 60)
        extra_headers += [
            (b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(decision.reset_s).encode()),
        ]
        if decision.allowed:
            return None
        self.state.metrics.rate_limited.labels(klass).inc()
        return (
            429,
            "too many requests; retry later",
            [(b"retry-after", str(decision.reset_s).encode())],
        )

    def _body_refusal(
        self, content_type: str | None, content_length: bytes | None, chunked: bool
    ) -> Refusal | None:
        if content_length is not None:
            try:
                if int(content_length) > self.max_body:
                    return 413, f"request body exceeds {self.max_body} bytes", []
            except ValueError:
                return 400, "invalid Content-Length", []
        # A chunked body announces no length but is a body all the same.
        has_body = chunked or content_length not in (None, b"0")
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if has_body and media != "application/json":
            return 415, "request body must be application/json", []
        return None

    def _limited_receive(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return limited_receive

    async def _failed(
        self,
        exc: Exception,
        deadline: asyncio.Timeout | None,
        scope: Scope,
        send: Send,
        request_id: str,
        status: int,
    ) -> None:
        """Answer for whatever escaped, unless a response has already started."""
        if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
            self.state.metrics.timeouts.labels(
                getattr(scope.get("route"), "path", "unmatched")
            ).inc()
            log.warning(
                "request timed out",
                extra={"requestId": request_id, "timeout_ms": self.timeout_s * 1000},
            )
            if not status:
                await self._send_error(
                    send, 503, "request timed out", request_id, [], code="timeout"
                )
            return
        if isinstance(exc, BodyTooLarge):
            if not status:
                await self._send_error(
                    send, 413, f"request body exceeds {self.max_body} bytes", request_id, []
                )
            return
        # FastAPI's handler has already answered and logged what a route raised; this is
        # what escaped before the framework (the rate limiter's query) or around it.
        failure = classify(exc)
        if not scope["state"].get("error_logged"):
            log_failure(log, failure, exc, request_id, scope["path"])
        if not status:
            headers = [
                (name.lower().encode(), value.encode())
                for name, value in (failure.headers() or {}).items()
            ]
            await self._send_error(
                send, failure.status, failure.message, request_id, headers, code=failure.code
            )

    @staticmethod
    async def _send_static(send: Send, body: bytes, head: bool) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})

    @staticmethod
    async def _send_error(
        send: Send,
        status: int,
        message: str,
        request_id: str,
        headers: list[tuple[bytes, bytes]],
        code: str | None = None,
    ) -> None:
        body = json.dumps(error_body(status, message, request_id, code)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
