"""The dependencies of the actuator's routes, in one place: the service, the caller, path ids, ``?wait=``.

Each reads what `create_app` put in ``app.state`` (the `ActuatorService`), so the routers in
`telestack.actuator.routes` are module-level and one app's settings never leak into another's.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import functools
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, TypeAdapter, ValidationError

from telestack.actuator.registry import ID_PATTERN
from telestack.actuator.service import ActuatorService
from telestack.actuator.tokens import Principal

__all__ = [
    "COMMAND_ID_PATTERN",
    "WAIT_DESCRIPTION",
    "Caller",
    "CommandId",
    "DeviceId",
    "Service",
    "Wait",
    "bearer",
    "get_principal",
    "get_service",
    "get_wait",
    "wait_description",
]

COMMAND_ID_PATTERN = r"^[0-9a-f]{32}$"
WAIT_DESCRIPTION = "seconds to wait for the command's final state"

bearer = HTTPBearer(auto_error=False, description="a token from `telestack tokens create`")


# Dependencies that never block are `async def`: FastAPI runs a plain `def` one in its thread pool, a thread hop
# per request each.
async def get_service(request: Request) -> ActuatorService:
    service: ActuatorService = request.app.state.service
    return service


Service = Annotated[ActuatorService, Depends(get_service)]


def get_principal(
    service: Service, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    return service.authenticate(credentials.credentials if credentials is not None else None)


Caller = Annotated[Principal, Depends(get_principal)]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="device id (see GET /v1/devices)", examples=["plug-1"])]
CommandId = Annotated[str, Path(pattern=COMMAND_ID_PATTERN, description="id returned when it was issued")]


def wait_description(max_wait_s: float) -> str:
    """The ``?wait=`` description of an app whose settings allow at most `max_wait_s`."""
    return f"{WAIT_DESCRIPTION} (at most {max_wait_s:g})"


@functools.lru_cache(maxsize=8)
def _at_most(max_wait_s: float) -> TypeAdapter[float]:
    return TypeAdapter(Annotated[float, Field(le=max_wait_s)])


async def get_wait(service: Service, wait: Annotated[float, Query(ge=0, description=WAIT_DESCRIPTION)] = 0) -> float:
    """``?wait=``, at most the app's ``max_wait_s``: over it, the 422 FastAPI gives for ``Query(le=...)``.

    The bound is a setting, so it is checked here rather than in the annotation (which is fixed when the
    module is imported); `telestack.actuator.app` writes it into the OpenAPI document.
    """
    try:
        return _at_most(service.options.max_wait_s).validate_python(wait)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("query", "wait")} for error in exc.errors()]) from exc


Wait = Annotated[float, Depends(get_wait)]
