"""The actuator's HTTP API (FastAPI): the app, error bodies, body limits, CORS, access log, OpenAPI document.

    POST /v1/devices/{device}/commands   command:<glob>   issue a command (Idempotency-Key, ?wait=)
    GET  /v1/commands/{command_id}       read | command   where a command stands (?wait=)
    GET  /v1/devices                     read | command   devices with last-seen, state, last command
    GET  /v1/devices/{device}            read | command   one device
    POST /v1/ingest                      ingest:<site>    line protocol or JSON batch → Kafka telemetry
    GET  /healthz, /metrics              (no token)
    GET  /ui                             a page for people (see `telestack.actuator.ui`)

The routes are module-level routers in `telestack.actuator.routes`, their dependencies in
`telestack.actuator.deps`. `create_app` takes a built `ActuatorService`, keeps it in ``app.state`` (where
the dependencies read it) and its lifespan starts and stops it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from telestack import __version__
from telestack.actuator.deps import wait_description
from telestack.actuator.errors import RequestError
from telestack.actuator.ingest import JsonBatch
from telestack.actuator.metrics import ActuatorMetrics
from telestack.actuator.models import ErrorBody, ErrorItem
from telestack.actuator.registry import ArgSpec, Registry
from telestack.actuator.routes import INGEST_PATH, ROUTERS
from telestack.actuator.service import ActuatorService
from telestack.actuator.ui import router as ui_router
from telestack.core.runtime import get_logger

__all__ = ["INGEST_PATH", "command_variants", "create_app"]

log = get_logger("actuator")

DESCRIPTION = """\
Commands to devices over MQTT with ack tracking, HTTP ingest for edge boxes, and an audit trail in Kafka.

**Auth**: `Authorization: Bearer tst_...` with a token from `telestack tokens create`. Scopes: `read`,
`command:<device glob>`, `ingest:<site>`, `admin`. Without a token: 401; without the scope: 403; over the
token's rate limit: 429 with `Retry-After`.

**Commands** are recorded in Kafka `commands` before they are published (MQTT QoS 1), then move
`pending → sent → acked | failed | timed_out`. Send an `Idempotency-Key` so that a retried request does not
switch a relay twice; add `?wait=<seconds>` to get the outcome in the same call.

**Ingest** takes line protocol (`text/plain`) or a JSON batch (`application/json`), optionally gzipped. The
whole request is checked first: any bad line refuses all of it (400, with the line numbers), so does a line the
token may not write (403: another site, or a measurement or device/vehicle outside the token's grant) and a point
with too many fields (413); the response comes after Kafka confirmed every record.
"""


class _BodyLimit:
    """413 for bodies over the limit (by Content-Length at once, or while reading a chunked body)."""

    def __init__(self, app: ASGIApp, *, default_bytes: int, ingest_bytes: int) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.ingest_bytes = ingest_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        limit = self.ingest_bytes if path == INGEST_PATH else self.default_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                body = ErrorBody(detail=f"the body is larger than {limit} bytes").model_dump_json()
                response = Response(
                    body, status_code=413, media_type="application/json", headers={"Connection": "close"}
                )
                await response(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(413, f"the body is larger than {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


class _AccessLog:
    """One log line and metrics per request (on the service's `metrics`); security headers on every response."""

    def __init__(self, app: ASGIApp, metrics: ActuatorMetrics) -> None:
        self.app = app
        self._requests = metrics.http_requests
        self._seconds = metrics.http_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                for name, value in ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")):
                    if name not in names:
                        headers.append((name, value))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self._requests.labels(scope["method"], route, str(status)).inc()
            self._seconds.labels(route).observe(elapsed)
            if route not in ("/healthz", "/metrics"):
                client = scope.get("client")
                log.info(
                    "http",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 1),
                    client=client[0] if client else None,
                )


def _error_response(
    status: int, detail: str, items: list[ErrorItem], headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=items)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI, metrics: ActuatorMetrics) -> None:
    ingest_refused = metrics.ingest_refused

    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestError)
        items = [ErrorItem(loc=list(p.loc), msg=p.msg, line=p.line) for p in exc.problems]
        if request.url.path.endswith(INGEST_PATH) and exc.status != 401:
            ingest_refused.labels(str(exc.status)).inc()
        return _error_response(exc.status, exc.detail, items, exc.headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        items = [ErrorItem(loc=list(err.get("loc", ())), msg=str(err.get("msg", ""))) for err in exc.errors()]
        summary = "; ".join(f"{'.'.join(str(p) for p in item.loc)}: {item.msg}" for item in items[:5])
        return _error_response(422, f"invalid request: {summary}", items)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error_response(exc.status_code, str(exc.detail), [], dict(exc.headers or {}))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", path=request.url.path, error=repr(exc), exc_info=exc)
        return _error_response(500, "internal error; the actuator's log has the details", [])

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _custom_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    # The ingest body is read raw (to count bytes and gunzip); its JSON model is declared here.
    batch = JsonBatch.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(batch.pop("$defs", {}))
    components["JsonBatch"] = batch
    # The commands of the registry, each with its arguments and bounds (which device takes which: GET /v1/devices).
    request = components["CommandRequest"]
    request["oneOf"] = command_variants(app.state.service.registry)
    # ?wait='s bound is a setting, checked by `deps.get_wait`: documented here as a `Query(le=...)` would be.
    max_wait_s = app.state.service.options.max_wait_s
    for operations in schema["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] == "wait":
                    parameter["description"] = parameter["schema"]["description"] = wait_description(max_wait_s)
                    parameter["schema"] = {"type": "number", "maximum": max_wait_s, **parameter["schema"]}
    app.openapi_schema = schema
    return schema


def _arg_schema(spec: ArgSpec) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": spec.type if spec.type != "boolean" else "boolean"}
    if spec.description:
        schema["description"] = spec.description + (f" ({spec.unit})" if spec.unit else "")
    if spec.min is not None:
        schema["minimum"] = spec.min
    if spec.max is not None:
        schema["maximum"] = spec.max
    if spec.choices is not None:
        schema["enum"] = list(spec.choices)
    if spec.max_length is not None:
        schema["maxLength"] = spec.max_length
    if spec.default is not None:
        schema["default"] = spec.default
    return schema


def command_variants(registry: Registry) -> list[dict[str, Any]]:
    """One JSON schema per (command, argument set) of the registry's types."""
    variants: dict[str, dict[str, Any]] = {}
    for type_name, device_type in sorted(registry.types.items()):
        for name, spec in device_type.commands.items():
            args = {
                "type": "object",
                "properties": {arg: _arg_schema(arg_spec) for arg, arg_spec in spec.args.items()},
                "required": [arg for arg, arg_spec in spec.args.items() if arg_spec.required],
                "additionalProperties": False,
            }
            variant = {
                "type": "object",
                "title": f"{name} ({type_name})",
                "properties": {"command": {"const": name}, "args": args},
                "required": ["command"] + (["args"] if args["required"] else []),
                "additionalProperties": False,
            }
            variants.setdefault(json.dumps(variant["properties"], sort_keys=True), variant)
    return list(variants.values())


def create_app(service: ActuatorService) -> FastAPI:
    options = service.options

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="telestack actuator",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if options.docs else None,
        redoc_url="/redoc" if options.docs else None,
        openapi_url="/openapi.json" if options.docs else None,
        openapi_tags=[
            {"name": "commands", "description": "commands to devices and their outcome"},
            {"name": "devices", "description": "the device registry with live state"},
            {"name": "ingest", "description": "telemetry pushed by edge boxes"},
            {"name": "operations", "description": "health and metrics"},
        ],
    )
    app.state.service = service
    app.openapi = lambda: _custom_openapi(app)  # type: ignore[method-assign]
    _install_error_handlers(app, service.metrics)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(ui_router)
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=options.cors_origins,
            allow_methods=["GET", "POST"],
            # X-Grafana-Action: Grafana adds it to every request a visualization action sends; without it in
            # the list the browser's preflight fails and the button does nothing.
            allow_headers=["Authorization", "Content-Type", "Content-Encoding", "Idempotency-Key", "X-Grafana-Action"],
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(_BodyLimit, default_bytes=options.body_max_bytes, ingest_bytes=options.ingest_max_body_bytes)
    app.add_middleware(_AccessLog, metrics=service.metrics)
    return app
