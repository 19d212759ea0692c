"""``telestack tokens create|list|revoke``: manage the actuator's bearer tokens.

    telestack tokens create --name grafana-button --scope command:plug-* --scope read
    telestack tokens create --name box-hq-1 --scope ingest:hq --expires-days 365
    telestack tokens list
    telestack tokens revoke grafana-button

The token is printed once by ``create``; only its hash is stored. A running actuator sees the change at
once. The store is ``actuator.tokens_file`` from the settings (``--tokens-file`` overrides it).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telestack.actuator.settings import ActuatorSettings
from telestack.actuator.tokens import TokenEntry, TokenStore
from telestack.core.settings import load_settings

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file (for actuator.tokens_file)")
    parser.add_argument(
        "--tokens-file", type=Path, default=None, help="the token store (default: actuator.tokens_file)"
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="action")
    create = sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--name", required=True, help="who or what uses it (shown in the audit trail)")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        help="read | admin | command:<device glob> | command:<device glob>/<command>,... | ingest:<site>; "
        "repeat for several",
    )
    create.add_argument("--expires-days", type=float, default=None, help="valid for this many days (default: forever)")
    listing = sub.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.add_argument("--all", action="store_true", help="include revoked and expired tokens")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    revoke = sub.add_parser("revoke", help="revoke a token by id or name")
    revoke.add_argument("token", help="the token's id (from list) or name")


def _store(args: argparse.Namespace) -> TokenStore:
    path = args.tokens_file
    if path is None:
        path = load_settings(ActuatorSettings, args.config).actuator.tokens_file
    return TokenStore(path)


def _status(entry: TokenEntry, now: datetime) -> str:
    if entry.revoked_at is not None:
        return "revoked"
    if entry.expires_at is not None and entry.expires_at <= now:
        return "expired"
    return "active"


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def run(args: argparse.Namespace) -> int:
    store = _store(args)
    out = sys.stdout
    now = datetime.now(UTC)
    if args.action == "create":
        expires = None if args.expires_days is None else now + timedelta(days=args.expires_days)
        token, entry = store.create(args.name, args.scope, expires_at=expires)
        out.write(f"{token}\n")
        sys.stderr.write(
            f"created token {entry.id} ({entry.name}; scopes: {', '.join(entry.scopes)}; "
            f"expires: {_when(entry.expires_at)}) in {store.path}\n"
            "it is shown only now: store it where its user will read it (it cannot be recovered)\n"
        )
        return 0
    if args.action == "list":
        entries = [e for e in store.entries() if args.all or _status(e, now) == "active"]
        if args.json:
            for entry in entries:
                fields = entry.model_dump(mode="json", exclude={"hash"})
                out.write(json.dumps({**fields, "status": _status(entry, now)}) + "\n")
            return 0
        rows = [("ID", "NAME", "STATUS", "CREATED", "EXPIRES", "SCOPES")]
        rows += [
            (e.id, e.name, _status(e, now), _when(e.created_at), _when(e.expires_at), " ".join(e.scopes))
            for e in entries
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + f"  {row[-1]}\n")
        return 0
    entry = store.revoke(args.token)
    sys.stderr.write(f"revoked token {entry.id} ({entry.name})\n")
    return 0
