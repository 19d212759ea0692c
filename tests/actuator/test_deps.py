"""The module-level routers and their dependencies, on apps built around a stand-in service (no server).

The routers are shared by every app of the process, so what a setting changes (the ``?wait=`` bound) must
come from each app's state: two apps with different bounds in one process, each validating and documenting
its own.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from telestack.actuator.app import create_app
from telestack.actuator.errors import NotFound, Unauthorized
from telestack.actuator.metrics import ActuatorMetrics
from telestack.actuator.registry import Registry
from telestack.actuator.settings import ActuatorOptions
from telestack.actuator.tokens import Principal

COMMAND = "/v1/commands/" + "a" * 32
TOKEN = {"Authorization": "Bearer good"}


def _authenticate(token: str | None) -> Principal:
    if token != "good":
        raise Unauthorized("no bearer token")
    return Principal(token_id="t1", name="admin", scopes=frozenset({"admin"}))


def _command(caller: Principal, command_id: str) -> Any:
    raise NotFound(f"no command {command_id}")


def app_with(max_wait_s: float) -> FastAPI:
    registry = Registry.model_validate({"types": {"plug": {"commands": {"on": {}}}}, "devices": []})
    service = SimpleNamespace(
        options=ActuatorOptions(max_wait_s=max_wait_s),
        registry=registry,
        authenticate=_authenticate,
        command=_command,
        metrics=ActuatorMetrics(),
    )
    return create_app(service)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def apps() -> dict[float, TestClient]:
    return {bound: TestClient(app_with(bound)) for bound in (1.0, 30.0)}


def _wait_parameters(app: FastAPI) -> list[dict[str, Any]]:
    return [
        parameter
        for operations in app.openapi()["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "wait"
    ]


@pytest.mark.parametrize("bound", [1.0, 30.0])
def test_each_app_documents_its_own_wait_bound(apps: dict[float, TestClient], bound: float) -> None:
    parameters = _wait_parameters(apps[bound].app)  # type: ignore[arg-type]
    assert len(parameters) == 2  # POST .../commands and GET /v1/commands/{id}
    for parameter in parameters:
        assert parameter["in"] == "query" and not parameter["required"]
        assert parameter["schema"]["maximum"] == bound and parameter["schema"]["minimum"] == 0
        description = f"seconds to wait for the command's final state (at most {bound:g})"
        assert parameter["description"] == parameter["schema"]["description"] == description


@pytest.mark.parametrize(
    ("bound", "wait", "status", "message"),
    [
        (1.0, "2", 422, "Input should be less than or equal to 1"),
        (1.0, "1", 404, None),
        (30.0, "2", 404, None),
        (30.0, "30.5", 422, "Input should be less than or equal to 30"),
        (30.0, "inf", 422, "Input should be less than or equal to 30"),
        (30.0, "-1", 422, "Input should be greater than or equal to 0"),
    ],
)
def test_each_app_checks_its_own_wait_bound(
    apps: dict[float, TestClient], bound: float, wait: str, status: int, message: str | None
) -> None:
    response = apps[bound].get(COMMAND, params={"wait": wait}, headers=TOKEN)
    assert response.status_code == status, response.text
    if message is not None:
        assert response.json() == {
            "detail": f"invalid request: query.wait: {message}",
            "errors": [{"loc": ["query", "wait"], "msg": message}],
        }


def test_the_caller_is_checked_before_the_wait_bound(apps: dict[float, TestClient]) -> None:
    response = apps[1.0].get(COMMAND, params={"wait": "2"})
    assert response.status_code == 401
    assert response.json()["detail"] == "no bearer token"
