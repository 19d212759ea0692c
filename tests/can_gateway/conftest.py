"""Fixtures of the CAN gateway tests: the project DBC, the recorded session and its frames."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cantools
import pytest
from cantools.database import Database

from telestack.can_gateway.command import build_gateway
from telestack.can_gateway.decoder import Frame
from telestack.can_gateway.gateway import Gateway
from telestack.can_gateway.settings import CanGatewaySettings
from telestack.can_gateway.sources import read_log
from telestack.core.kafka import ensure_topics
from telestack.core.settings import KafkaSettings
from tests.harness import RunningService

ROOT = Path(__file__).resolve().parents[2]
VEHICLE_DBC = ROOT / "config" / "dbc" / "telestack_vehicle.dbc"
DATA = ROOT / "tests" / "data" / "can_gateway"
SESSION_LOG = DATA / "vehicle_session.log"
SESSION_BLF = DATA / "vehicle_session.blf"
GARBAGE_LOG = DATA / "garbage_frames.log"


@pytest.fixture(scope="session")
def vehicle_db() -> Database:
    db = cantools.database.load_file(str(VEHICLE_DBC))
    assert isinstance(db, Database)
    return db


@pytest.fixture(scope="session")
def session_frames() -> list[tuple[str, Frame]]:
    """(bus, frame) of the recorded session: 3 s of `telestack simulate vehicle` on three buses."""
    return [(str(channel), frame) for channel, frame in read_log(SESSION_LOG, "python-can")]


# --- Kafka helpers (integration tests) ---------------------------------------------------------------------


@pytest.fixture
def gateway_kafka(kafka_settings: KafkaSettings, unique: str) -> KafkaSettings:
    """Kafka settings whose telemetry and can.raw topics are fresh (3 partitions each)."""
    topics = {"telemetry": f"tel-{unique}", "can_raw": f"raw-{unique}"}
    ensure_topics(kafka_settings, {name: 3 for name in topics.values()})
    return kafka_settings.model_copy(update={"topics": kafka_settings.topics.model_copy(update=topics)})


def gateway_settings(kafka: KafkaSettings, spool_dir: Path, **options: Any) -> CanGatewaySettings:
    options.setdefault("vehicle", "ved-01")
    options.setdefault("databases", [VEHICLE_DBC])
    options.setdefault("reload_interval_s", 0)
    options["spool"] = {"directory": spool_dir, **options.get("spool", {})}
    return CanGatewaySettings(kafka=kafka, can_gateway=options)


@pytest.fixture
def run_gateway() -> Iterator[Callable[[CanGatewaySettings], RunningService[Gateway]]]:
    """Factory: a gateway built from settings, running in a thread; stopped after the test."""
    running: list[RunningService[Gateway]] = []

    def start(settings: CanGatewaySettings) -> RunningService[Gateway]:
        running.append(RunningService(build_gateway(settings)))
        return running[-1]

    yield start
    for gateway in running:
        gateway.stop()
