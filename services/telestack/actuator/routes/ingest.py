"""Telemetry pushed by edge boxes: ``POST /v1/ingest`` (line protocol or a JSON batch, optionally gzipped).

The body is read raw (to count bytes and gunzip), so its JSON model is declared in the OpenAPI document by
`telestack.actuator.app`.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from telestack.actuator.deps import Caller, Service
from telestack.actuator.errors import InvalidInput
from telestack.actuator.ingest import PRECISIONS
from telestack.actuator.models import IngestAccepted, error_responses
from telestack.actuator.registry import ID_PATTERN

__all__ = ["INGEST_PATH", "router"]

INGEST_PATH = "/v1/ingest"

router = APIRouter(tags=["ingest"])


@router.post(
    INGEST_PATH,
    summary="Push telemetry (line protocol or JSON batch, optionally gzipped) for the token's site",
    response_model=IngestAccepted,
    responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": "energy,device=box-7,sensor=meter-3 mean=21.5,min=20.1,max=22.0,diff=1.9 "
                    "1714564800000000000\n",
                },
                "application/json": {"schema": {"$ref": "#/components/schemas/JsonBatch"}},
            },
        }
    },
)
async def ingest(
    request: Request,
    caller: Caller,
    service: Service,
    site: Annotated[
        str | None,
        Query(pattern=ID_PATTERN, description="the site, when the token may ingest for several"),
    ] = None,
    precision: Annotated[
        str,
        Query(
            pattern="^(" + "|".join(PRECISIONS) + ")$",
            description="unit of integer timestamps (as InfluxDB's write API)",
        ),
    ] = "ns",
    content_encoding: Annotated[str | None, Header(alias="Content-Encoding", description="gzip, or absent")] = None,
) -> IngestAccepted:
    body = await request.body()
    if not body:
        raise InvalidInput("the body is empty: send line protocol or a JSON batch")
    result = await service.ingest(
        caller,
        body,
        content_type=request.headers.get("content-type"),
        content_encoding=content_encoding,
        site=site,
        precision=precision,
    )
    return IngestAccepted(site=result.site, points=result.points, records=result.records)
