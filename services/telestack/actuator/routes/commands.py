"""Commands to devices and their outcome: ``POST /v1/devices/{device}/commands``, ``GET /v1/commands/{id}``."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from telestack.actuator.deps import Caller, CommandId, DeviceId, Service, Wait
from telestack.actuator.models import CommandRequest, CommandStatus, command_status, error_responses

__all__ = ["IDEMPOTENCY_KEY_PATTERN", "router"]

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

router = APIRouter(tags=["commands"])


@router.post(
    "/v1/devices/{device}/commands",
    summary="Issue a command to a device",
    status_code=202,
    response_model=CommandStatus,
    responses={
        200: {"model": CommandStatus, "description": "an earlier command with the same Idempotency-Key"},
        202: {
            "description": "the command, recorded and published (or final, with ?wait=)",
            "headers": {"Location": {"description": "the command's URL", "schema": {"type": "string"}}},
        },
        **error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
)
async def post_command(
    device: DeviceId,
    body: CommandRequest,
    caller: Caller,
    service: Service,
    request: Request,
    response: Response,
    wait: Wait,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="any unique string (e.g. a UUID); a retry with the same key returns the first "
            "command instead of issuing a second one",
        ),
    ] = None,
) -> CommandStatus:
    record, replayed = await service.issue_command(caller, device, body.command, body.args, idempotency_key)
    await service.wait(record, wait)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/v1/commands/{record.id}"
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return command_status(record)


@router.get(
    "/v1/commands/{command_id}",
    summary="Where a command stands",
    response_model=CommandStatus,
    responses=error_responses(401, 403, 404, 422, 429),
)
async def get_command(command_id: CommandId, caller: Caller, service: Service, wait: Wait) -> CommandStatus:
    record = service.command(caller, command_id)
    await service.wait(record, wait)
    return command_status(record)
