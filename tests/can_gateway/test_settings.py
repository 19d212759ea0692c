"""Gateway settings: what fails at start, and the example configuration."""

from __future__ import annotations

import pytest

from telestack.can_gateway.databases import DecoderSet
from telestack.can_gateway.settings import CanGatewaySettings
from telestack.cli import main
from telestack.core.errors import ConfigError
from telestack.core.settings import load_settings
from tests.can_gateway.conftest import ROOT


def test_duplicate_bus_names_and_no_input_fail_at_start() -> None:
    with pytest.raises(ConfigError, match="bus names must be unique; repeated: can0"):
        load_settings(CanGatewaySettings, overrides={"can_gateway": {"buses": [{"name": "can0"}, {"name": "can0"}]}})
    with pytest.raises(ConfigError, match="at least one bus"):
        load_settings(CanGatewaySettings, overrides={"can_gateway": {"buses": []}})
    with pytest.raises(ConfigError, match=r"can_gateway\.spool\.on_full"):
        load_settings(CanGatewaySettings, overrides={"can_gateway": {"spool": {"on_full": "explode"}}})


def test_example_configuration_loads_and_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    settings = load_settings(CanGatewaySettings, ROOT / "config" / "can_gateway.example.yaml")
    options = settings.can_gateway
    assert [bus.name for bus in options.buses] == ["powertrain", "chassis", "battery"]
    assert options.http.port == 9101
    decoders = DecoderSet(options)
    engine = decoders.for_bus("powertrain").decode_line(0x100, bytes(8), 1.0)
    assert engine.startswith("engine,bus=powertrain,vehicle=ved-01 ") and "rpm=0.0" in engine


@pytest.mark.parametrize(
    "command", [["can-gateway", "--help"], ["can-replay", "--help"], ["simulate", "vehicle", "--help"]]
)
def test_help_documents_every_option(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(command)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "TELESTACK_" in text
    if command[0] == "can-gateway":
        assert "--can-gateway.spool.max-bytes" in text and "--can-gateway.replay.speed" in text
