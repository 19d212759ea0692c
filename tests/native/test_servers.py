"""Native servers: what their start-up must survive."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from telestack.native.servers import KafkaServer


def test_kafka_formats_with_a_cluster_id_starting_with_a_dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: 1 id in 64 starts with "-", and passed as its own argument it was read as a flag.
    dashed = b"-" + base64.urlsafe_b64encode(uuid.uuid4().bytes)[1:]
    monkeypatch.setattr(base64, "urlsafe_b64encode", lambda _raw: dashed)
    server = KafkaServer(tmp_path)
    server.install()
    server.prepare()
    meta = (tmp_path / "data" / "meta.properties").read_text()
    assert f"cluster.id={dashed.rstrip(b'=').decode()}" in meta
