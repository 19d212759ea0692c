"""The telestack command: every subcommand answers --help."""

from __future__ import annotations

import pytest

from telestack.cli import COMMANDS, main


def test_overview_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    # In this process, as the console script runs it (a subprocess per command cost ~2 s each in make test-unit).
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0, capsys.readouterr().err
    assert f"telestack {name}" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
