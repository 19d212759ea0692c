"""InfluxDB's own line-protocol parser as a test oracle: built by ``telestack native install``, cached.

`lineproto_oracle_path` is where the build for the current sources lives (it may not exist yet);
`install_lineproto_oracle` builds it when missing (Go; a few seconds from the InfluxDB build's module cache).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from telestack.native.servers import SCRIPTS_DIR, cache_dir, report, run_script

__all__ = ["ORACLE_SOURCE", "install_lineproto_oracle", "lineproto_oracle_path"]

ORACLE_SOURCE = SCRIPTS_DIR / "lineproto-oracle"


def lineproto_oracle_path() -> Path:
    """The binary built from the current sources (same hash as install-lineproto-oracle.sh)."""
    digest = hashlib.sha256(
        b"".join((ORACLE_SOURCE / name).read_bytes() for name in ("main.go", "go.mod", "go.sum"))
    ).hexdigest()[:16]
    return cache_dir() / "lineproto-oracle" / digest / "lineproto-oracle"


def install_lineproto_oracle() -> Path:
    started = time.monotonic()
    path = Path(run_script("install-lineproto-oracle.sh"))
    report(f"line-protocol oracle ready in {time.monotonic() - started:.1f} s: {path}")
    return path
