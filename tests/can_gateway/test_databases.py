"""Hot reload of the databases: a good change is swapped in, a broken file leaves the running decoders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from telestack.can_gateway.databases import DatabaseWatcher, DecoderSet
from telestack.can_gateway.settings import GatewayOptions
from tests.can_gateway.conftest import DATA, VEHICLE_DBC


def _touch_later(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a visible mtime change


def test_reload_swaps_good_files_and_keeps_decoders_on_broken_ones(tmp_path: Path) -> None:
    dbc = tmp_path / "vehicle.dbc"
    shutil.copy(VEHICLE_DBC, dbc)
    options = GatewayOptions(databases=[dbc], buses=[{"name": "powertrain"}])  # type: ignore[list-item]
    current = DecoderSet(options)
    watcher = DatabaseWatcher(current, interval_s=0)
    watcher.check_now()
    assert watcher.take() is None  # nothing changed

    _touch_later(dbc, (DATA / "broken_syntax.dbc").read_text())
    watcher.check_now()
    assert watcher.take() is None and watcher.failures == 1 and "line 6" in (watcher.last_error or "")
    watcher.check_now()
    assert watcher.failures == 1  # the same broken file is not retried every interval

    _touch_later(dbc, VEHICLE_DBC.read_text().replace("BO_ 256 EngineStatus", "BO_ 256 Engine"))
    watcher.check_now()
    fresh = watcher.take()
    assert fresh is not None and watcher.reloads == 1
    assert fresh.for_bus("powertrain").decode_line(0x100, bytes(8), 1.0).startswith("Engine,")
    assert current.for_bus("powertrain").decode_line(0x100, bytes(8), 1.0).startswith("EngineStatus,")
