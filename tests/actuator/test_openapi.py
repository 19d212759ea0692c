"""Schemathesis against the actuator's OpenAPI document, on a real uvicorn with real Kafka and Mosquitto.

Every operation gets generated requests, valid and invalid (and valid ones on a device and a command that
exist); each response must not be a server error and must match the documented status codes, content types,
headers and schemas. Bounded: `MAX_EXAMPLES` per operation and mode, ?wait= capped at 1 s.

One check is left out: `positive_data_acceptance`. Which commands a device takes depends on its type, that is
on the value of the {device} path parameter, which OpenAPI cannot tie to the body: a schema-valid
``set_setpoint`` sent to a plug is rightly refused with 422.

Cases are driven with hypothesis directly rather than through schemathesis' pytest plugin, which does not
run under pytest 9 (it reads a private attribute pytest removed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok

from tests.actuator.conftest import ActuatorFactory, FakeDevice, RunningActuator

MAX_EXAMPLES = 30


@pytest.fixture
def fuzzed_actuator(actuators: ActuatorFactory) -> RunningActuator:
    return actuators.start(max_wait_s=1.0, command_timeout_s=1.0, rate_limit_per_s=0.0)


@pytest.fixture
def api_schema(fuzzed_actuator: RunningActuator) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed_actuator.url}/openapi.json")


def test_the_document_is_complete(api_schema: schemathesis.BaseSchema) -> None:
    raw = api_schema.raw_schema
    assert raw["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            if path.startswith("/v1/"):
                for status in ("401", "429"):
                    assert status in operation["responses"], f"{method} {path} does not document {status}"
                    schema_ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                    assert schema_ref.endswith("/ErrorBody")
    assert raw["components"]["schemas"]["CommandRequest"]["examples"]
    assert "text/plain" in raw["paths"]["/v1/ingest"]["post"]["requestBody"]["content"]


def _fuzz(operation: schemathesis.APIOperation, strategy: SearchStrategy, headers: dict[str, str]) -> list[str]:
    """Run `strategy`'s cases against the server; returns the (shrunk) failure, if any, as text."""
    failures: list[str] = []

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        try:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
        except Exception as exc:  # failed checks (a FailureGroup), or the server unreachable
            failures.append(f"{operation.label}: {exc}")
            raise

    with contextlib.suppress(Exception):  # recorded above; hypothesis re-raises the shrunk example last
        run()
    return failures[-1:]


def test_no_server_errors_and_responses_match_the_schema(
    api_schema: schemathesis.BaseSchema, fuzzed_actuator: RunningActuator, fake_device: Callable[..., FakeDevice]
) -> None:
    devices = fuzzed_actuator.devices
    fake_device(devices.plug)
    headers = {"Authorization": f"Bearer {fuzzed_actuator.tokens.admin}"}
    issued = fuzzed_actuator.client(fuzzed_actuator.tokens.admin).post(
        f"/v1/devices/{devices.plug}/commands", json={"command": "on"}
    )
    real_paths = [{"device": devices.plug}, {"device": devices.fermenter}, {"command_id": issued.json()["id"]}]
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        for mode in GenerationMode:
            failures += _fuzz(operation, operation.as_strategy(generation_mode=mode), headers)
        names = {p.name for p in operation.path_parameters}
        for values in real_paths:
            if names and set(values) == names:  # valid cases on a device or command that exists
                strategy = operation.as_strategy(GenerationMode.POSITIVE, path_parameters=values)
                failures += _fuzz(operation, strategy, headers)
    assert operations >= 7
    assert not failures, "\n\n".join(failures)
