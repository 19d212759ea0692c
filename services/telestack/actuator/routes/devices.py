"""The device registry with live state: ``GET /v1/devices``, ``GET /v1/devices/{device}``."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.

from fastapi import APIRouter

from telestack.actuator.deps import Caller, DeviceId, Service
from telestack.actuator.models import DeviceList, DeviceView, error_responses

__all__ = ["router"]

router = APIRouter(tags=["devices"])


@router.get(
    "/v1/devices",
    summary="Devices the token may see, with last-seen time, state and last command",
    response_model=DeviceList,
    responses=error_responses(401, 403, 429),
)
async def list_devices(caller: Caller, service: Service) -> DeviceList:
    return DeviceList(devices=[service.device_view(caller, device) for device in service.visible_devices(caller)])


@router.get(
    "/v1/devices/{device}",
    summary="One device",
    response_model=DeviceView,
    responses=error_responses(401, 403, 404, 422, 429),
)
async def get_device(device: DeviceId, caller: Caller, service: Service) -> DeviceView:
    service.check_visible(caller, device)
    return service.device_view(caller, device)
