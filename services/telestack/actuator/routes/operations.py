"""Health and metrics: ``GET /healthz``, ``GET /metrics`` (no token); ``GET /`` redirects to the /ui page."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from telestack.actuator.deps import Service
from telestack.actuator.models import CheckResult, Health

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Health of the actuator and its connections (MQTT, Kafka, token store)",
    response_model=Health,
    responses={503: {"model": Health, "description": "a check is failing"}},
)
async def healthz(service: Service) -> JSONResponse:
    checks = service.health()
    healthy = all(check.ok for check in checks)
    body = Health(
        status="ok" if healthy else "failing",
        checks={check.name: CheckResult(ok=check.ok, detail=check.detail) for check in checks},
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus_metrics(service: Service) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def root(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}/ui", status_code=303)
