"""Bearer tokens with scopes, stored hashed in a JSON file that ``telestack tokens`` edits.

A token reads ``tst_<id>_<secret>``: the id finds its entry, the SHA-256 of the whole token must match the
stored hash. The secret holds 256 random bits, so a fast hash is enough (nothing to brute-force, unlike a
password); only the hash is stored, and the token is shown once, when created.

Scopes:

- ``read``: list devices, read commands;
- ``command:<glob>``: command the devices whose id matches the glob (``command:plug-*``), and read them;
- ``command:<glob>/<command>,...``: only those commands on those devices, nothing else (not even reading):
  what a token a dashboard viewer can read may do (``command:plug-1/on,off,toggle``, a Grafana button);
- ``ingest:<site>``: push telemetry for that site (the site tag is forced to it);
- ``admin``: everything.

The running actuator re-reads the file when it changes, so a new token or a revocation applies at once.

>>> principal = Principal("ab12cd34", "grafana", frozenset({"command:plug-*"}))
>>> principal.can_command("plug-1"), principal.can_command("f1"), principal.can_read()
(True, False, False)
>>> button = Principal("ab12cd35", "grafana-buttons", frozenset({"command:plug-1/on,off"}))
>>> button.can_command("plug-1", "on"), button.can_command("plug-1", "toggle"), button.can_command("plug-1")
(True, False, False)
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from telestack.actuator.errors import TokenStoreError

__all__ = ["SCOPE_PATTERN", "Principal", "TokenEntry", "TokenStore", "check_scope", "hash_token"]

TOKEN_PREFIX = "tst_"
SCOPE_PATTERN = re.compile(
    r"^(read|admin|command:[A-Za-z0-9_.:*?\[\]!-]{1,128}|ingest:[A-Za-z0-9][A-Za-z0-9_.:-]{0,127})$"
)
# command:<device glob>/<command>[,<command>...]: '/' and ',' appear in neither device ids nor command names.
RESTRICTED_COMMAND_PATTERN = re.compile(
    r"^command:[A-Za-z0-9_.:*?\[\]!-]{1,128}/[A-Za-z_][A-Za-z0-9_.-]{0,63}(,[A-Za-z_][A-Za-z0-9_.-]{0,63}){0,31}$"
)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scope(scope: str) -> str:
    """The scope itself if valid, else `TokenStoreError` saying which forms exist."""
    if not SCOPE_PATTERN.match(scope) and not RESTRICTED_COMMAND_PATTERN.match(scope):
        raise TokenStoreError(
            f"invalid scope {scope!r}: use read, admin, command:<device glob> (e.g. command:plug-*), "
            "command:<device glob>/<command>,... (e.g. command:plug-1/on,off) or ingest:<site>"
        )
    return scope


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id (not secret), its name (the audit trail's actor) and its scopes."""

    token_id: str
    name: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def can_read(self) -> bool:
        return self.is_admin or "read" in self.scopes

    def command_globs(self) -> list[str]:
        """Device globs of the unrestricted command scopes (those grant reading the devices too)."""
        return [
            scope.removeprefix("command:") for scope in self.scopes if scope.startswith("command:") and "/" not in scope
        ]

    def can_command(self, device_id: str, command: str | None = None) -> bool:
        """May command `device_id`: any command (`command` None), or that one (a restricted scope suffices)."""
        if self.is_admin or any(fnmatch.fnmatchcase(device_id, glob) for glob in self.command_globs()):
            return True
        if command is None:
            return False
        for scope in self.scopes:
            if not scope.startswith("command:"):
                continue
            glob, sep, names = scope.removeprefix("command:").partition("/")
            if sep and command in names.split(",") and fnmatch.fnmatchcase(device_id, glob):
                return True
        return False

    def can_see(self, device_id: str) -> bool:
        """Reading a device: `read`, or the right to command it."""
        return self.can_read() or self.can_command(device_id)

    def ingest_sites(self) -> list[str]:
        return sorted(scope.removeprefix("ingest:") for scope in self.scopes if scope.startswith("ingest:"))


class TokenEntry(BaseModel):
    """One stored token (never the token itself)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    scopes: list[str]
    hash: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def principal(self) -> Principal:
        return Principal(self.id, self.name, frozenset(self.scopes))


class _StoreFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    tokens: list[TokenEntry] = Field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenStore:
    """The token file: `authenticate` for the service (re-reads the file when it changes), and the edits."""

    def __init__(self, path: Path, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        self._entries: dict[str, TokenEntry] = {}
        self._signature: tuple[int, int, int] | None = None
        self.load_error: str | None = None
        self.reload(force=True)

    # --- reading (the service) ---------------------------------------------------------------------------

    def _file_signature(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # edits replace the file: a new inode

    def reload(self, *, force: bool = False) -> None:
        """Re-read the file if it changed (a stat per call: cheap next to a request, and revocation is instant)."""
        with self._lock:
            signature = self._file_signature()
            if not force and signature == self._signature:
                return
            try:
                data = self._read()
            except TokenStoreError as exc:
                # Keep serving with the tokens we had; a half-written edit must not lock everyone out.
                self.load_error = str(exc)
                if force:
                    raise
                return
            self._entries = {entry.id: entry for entry in data.tokens}
            self._signature = signature
            self.load_error = None

    def _read(self) -> _StoreFile:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _StoreFile()
        except OSError as exc:
            raise TokenStoreError(f"cannot read token store {self.path}: {exc}") from exc
        try:
            return _StoreFile.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise TokenStoreError(f"token store {self.path} is not valid: {exc}") from None

    def authenticate(self, token: str) -> Principal | None:
        """The principal for a presented token, or None (unknown, wrong secret, revoked, expired)."""
        self.reload()
        if not token.startswith(TOKEN_PREFIX):
            return None
        token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
        if not sep or not secret:
            return None
        entry = self._entries.get(token_id)
        if entry is None:
            return None
        if not hmac.compare_digest(entry.hash, hash_token(token)):
            return None
        if not entry.active(self._now()):
            return None
        return entry.principal()

    def entries(self) -> list[TokenEntry]:
        self.reload(force=True)
        return sorted(self._entries.values(), key=lambda entry: entry.created_at)

    def active_count(self) -> int:
        self.reload()
        now = self._now()
        return sum(1 for entry in self._entries.values() if entry.active(now))

    # --- editing (the CLI) -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _editing(self) -> Iterator[_StoreFile]:
        """Read-modify-write under an exclusive lock; written atomically (temp file + rename), mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(data.model_dump_json(indent=2) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        self.reload(force=True)

    def create(self, name: str, scopes: Iterable[str], *, expires_at: datetime | None = None) -> tuple[str, TokenEntry]:
        """A new token and its entry; the token itself is returned once and never stored."""
        name = name.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}", name):
            raise TokenStoreError(f"invalid token name {name!r}: letters, digits and _ . @ : - (at most 64)")
        wanted = sorted({check_scope(scope) for scope in scopes})
        if not wanted:
            raise TokenStoreError("a token needs at least one scope (read, admin, command:<glob>, ingest:<site>)")
        now = self._now()
        if expires_at is not None and expires_at <= now:
            raise TokenStoreError("the expiry date is in the past")
        with self._editing() as data:
            if any(entry.name == name and entry.active(now) for entry in data.tokens):
                raise TokenStoreError(f"an active token is already named {name!r}; revoke it or pick another name")
            taken = {entry.id for entry in data.tokens}
            token_id = secrets.token_hex(4)
            while token_id in taken:
                token_id = secrets.token_hex(4)
            token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
            entry = TokenEntry(
                id=token_id, name=name, scopes=wanted, hash=hash_token(token), created_at=now, expires_at=expires_at
            )
            data.tokens.append(entry)
        return token, entry

    def revoke(self, id_or_name: str) -> TokenEntry:
        """Revoke the active token with that id or name."""
        now = self._now()
        with self._editing() as data:
            matches = [
                entry
                for entry in data.tokens
                if entry.revoked_at is None and (entry.id == id_or_name or entry.name == id_or_name)
            ]
            if not matches:
                raise TokenStoreError(f"no unrevoked token has the id or name {id_or_name!r}")
            if len(matches) > 1:
                ids = ", ".join(entry.id for entry in matches)
                raise TokenStoreError(f"{id_or_name!r} names several tokens ({ids}); revoke by id")
            matches[0].revoked_at = now
            return matches[0]
