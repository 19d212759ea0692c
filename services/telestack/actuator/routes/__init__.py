"""The actuator's HTTP routes, one module-level `APIRouter` per tag; their dependencies are in
`telestack.actuator.deps`. `create_app` includes them in this order (which is the OpenAPI document's).

    commands     POST /v1/devices/{device}/commands, GET /v1/commands/{command_id}
    devices      GET /v1/devices, GET /v1/devices/{device}
    ingest       POST /v1/ingest
    operations   GET /healthz, GET /metrics, GET / (to /ui)
"""

from telestack.actuator.routes.commands import router as commands_router
from telestack.actuator.routes.devices import router as devices_router
from telestack.actuator.routes.ingest import INGEST_PATH
from telestack.actuator.routes.ingest import router as ingest_router
from telestack.actuator.routes.operations import router as operations_router

__all__ = ["INGEST_PATH", "ROUTERS"]

ROUTERS = (commands_router, devices_router, ingest_router, operations_router)
