"""``telestack mqtt-bridge``: its settings, its --help, and errors at start that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from telestack.cli import main
from telestack.core.ports import SERVICE_PORTS
from telestack.mqtt_bridge.settings import BridgeOptions, BridgeSettings


def test_defaults() -> None:
    options = BridgeSettings().mqtt_bridge
    assert options.http.port == SERVICE_PORTS["mqtt-bridge"] == 9102
    assert options.ack_topic == "devices/{device}/ack"
    assert options.rules_file == Path("config/mqtt-bridge.yaml")
    assert options.client_id == "telestack-mqtt-bridge"


@pytest.mark.parametrize("group", ["", "a/b", "g+", "#"])
def test_share_group_must_be_a_plain_name(group: str) -> None:
    with pytest.raises(ValidationError, match="share_group"):
        BridgeOptions(share_group=group)


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["mqtt-bridge", "--help"])
    out = capsys.readouterr().out
    for flag in ("--mqtt-bridge.rules-file", "--mqtt-bridge.inflight-window", "--mqtt-bridge.share-group"):
        assert flag in out
    assert "TELESTACK_MQTT_BRIDGE__RECONNECT_BOUND_S" in out.replace("\n", "").replace(" ", "")


def test_missing_rules_file_fails_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["mqtt-bridge", f"--mqtt-bridge.rules-file={tmp_path / 'missing.yaml'}"])
    assert status == 1
    assert "mqtt_bridge.rules_file" in capsys.readouterr().err


def test_invalid_rules_fail_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: broken, topic: a/b, format: json}\n")
    assert main(["mqtt-bridge", f"--mqtt-bridge.rules-file={rules}"]) == 1
    assert "rule 'broken'" in capsys.readouterr().err
