"""Bearer tokens: hashing, scopes, expiry, revocation, the file, and ``telestack tokens``."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telestack.actuator.errors import TokenStoreError
from telestack.actuator.tokens import Principal, TokenStore, hash_token
from telestack.cli import main


def test_a_token_authenticates_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, entry = store.create("grafana-button", ["command:plug-*", "read"])
    assert token.startswith(f"tst_{entry.id}_") and len(token) > 40
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text and hash_token(token) in text
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    principal = store.authenticate(token)
    assert principal == Principal(entry.id, "grafana-button", frozenset({"command:plug-*", "read"}))


def test_wrong_tokens_do_not_authenticate(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, entry = store.create("a", ["read"])
    for wrong in ("", "Bearer " + token, token[:-1] + ("A" if token[-1] != "A" else "B"), f"tst_{entry.id}_", "tst_"):
        assert store.authenticate(wrong) is None


def test_expired_and_revoked_tokens_are_refused(tmp_path: Path) -> None:
    now = [datetime(2024, 1, 1, tzinfo=UTC)]
    store = TokenStore(tmp_path / "tokens.json", now=lambda: now[0])
    expiring, _ = store.create("short", ["read"], expires_at=now[0] + timedelta(days=1))
    lasting, _ = store.create("long", ["read"])
    assert store.authenticate(expiring) is not None
    now[0] += timedelta(days=2)
    assert store.authenticate(expiring) is None
    store.revoke("long")
    assert store.authenticate(lasting) is None
    # Another store (another process) sees the revocation from the file.
    assert TokenStore(tmp_path / "tokens.json").authenticate(lasting) is None


def test_scopes_are_checked_at_creation(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    for bad in (["write"], ["command:"], ["ingest:*"], ["ingest:a b"], []):
        with pytest.raises(TokenStoreError):
            store.create("x", bad)
    store.create("dup", ["read"])
    with pytest.raises(TokenStoreError, match="already named"):
        store.create("dup", ["read"])
    with pytest.raises(TokenStoreError, match="no unrevoked token"):
        store.revoke("nobody")


def test_scope_semantics() -> None:
    p = Principal("id", "n", frozenset({"command:plug-*", "command:f[12]", "ingest:hq"}))
    assert p.can_command("plug-lab") and p.can_command("f1") and not p.can_command("f3")
    assert not p.can_read() and p.can_see("plug-lab") and not p.can_see("f3")
    assert p.ingest_sites() == ["hq"]
    admin = Principal("id", "n", frozenset({"admin"}))
    assert admin.can_command("anything") and admin.can_read()


def test_a_corrupt_file_fails_at_start_but_not_while_running(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    token, _ = store.create("a", ["read"])
    path.write_text("{ half written")
    assert store.authenticate(token) is not None  # keeps the tokens it had
    assert store.load_error is not None
    with pytest.raises(TokenStoreError, match="not valid"):
        TokenStore(path)


def test_the_tokens_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "tokens.json")
    assert main(["tokens", "--tokens-file", path, "create", "--name", "box-hq", "--scope", "ingest:hq"]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenStore(Path(path)).authenticate(token) is not None

    assert (
        main(["tokens", "--tokens-file", path, "create", "--name", "ro", "--scope", "read", "--expires-days", "3"]) == 0
    )
    capsys.readouterr()
    assert main(["tokens", "--tokens-file", path, "list"]) == 0
    table = capsys.readouterr().out
    assert "box-hq" in table and "ingest:hq" in table and "ro" in table and token not in table

    assert main(["tokens", "--tokens-file", path, "revoke", "box-hq"]) == 0
    assert TokenStore(Path(path)).authenticate(token) is None
    assert main(["tokens", "--tokens-file", path, "list", "--all", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {row["name"]: row["status"] for row in rows} == {"box-hq": "revoked", "ro": "active"}
    assert all("hash" not in row for row in rows)

    assert main(["tokens", "--tokens-file", path, "create", "--name", "x", "--scope", "root"]) == 1
    assert "invalid scope 'root'" in capsys.readouterr().err


def test_a_restricted_command_scope_allows_exactly_its_commands_on_its_devices(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, _ = store.create("grafana-buttons", ["command:plug-1/on,off,toggle", "command:f*/set_setpoint"])
    button = store.authenticate(token)
    assert button is not None
    assert [button.can_command("plug-1", c) for c in ("on", "off", "toggle", "reboot")] == [True, True, True, False]
    assert not button.can_command("plug-2", "on")  # another device
    assert button.can_command("f2", "set_setpoint") and not button.can_command("f2", "on")
    # Nothing beyond the buttons: no device listing, no reading, no "any command" check.
    assert not button.can_read() and button.command_globs() == [] and not button.can_see("plug-1")
    assert not button.can_command("plug-1")


@pytest.mark.parametrize("scope", ["command:plug-1/", "command:/on", "command:plug-1/on,", "command:plug-1/o n"])
def test_malformed_restricted_scopes_are_refused(tmp_path: Path, scope: str) -> None:
    with pytest.raises(TokenStoreError, match="command:<device glob>/<command>"):
        TokenStore(tmp_path / "tokens.json").create("x", [scope])
