"""InfluxDB's own line-protocol parser as a test oracle, built and cached by ``telestack native install``.

`lineproto_oracle_path` is where the build for the current sources lives (it may not exist yet); the build is
``scripts/install-lineproto-oracle.sh`` (Go; a few seconds from the InfluxDB build's module cache).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from telestack.native.servers import SCRIPTS_DIR, cache_dir

__all__ = ["ORACLE_SOURCE", "lineproto_oracle_path"]

ORACLE_SOURCE = SCRIPTS_DIR / "lineproto-oracle"


def lineproto_oracle_path() -> Path:
    """The binary built from the current sources (same hash as install-lineproto-oracle.sh)."""
    digest = hashlib.sha256(
        b"".join((ORACLE_SOURCE / name).read_bytes() for name in ("main.go", "go.mod", "go.sum"))
    ).hexdigest()[:16]
    return cache_dir() / "lineproto-oracle" / digest / "lineproto-oracle"
