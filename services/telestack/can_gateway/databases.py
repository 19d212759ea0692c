"""The decoders of every bus, built from the configured database files, and their hot reload.

`DecoderSet` loads each file once and compiles one `BusDecoder` per bus (buses met only in a replayed log
get the gateway-wide databases). `DatabaseWatcher` checks the files' modification times in a thread; when
one changes it loads and compiles a complete new set there, and the gateway swaps it in between two batches:
frames keep queueing meanwhile, so none is lost, and a broken file leaves the running decoders in place.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cantools.database import Database

from telestack.can_gateway.decoder import BusDecoder, compile_bus, load_databases
from telestack.can_gateway.errors import CanGatewayError, MappingError
from telestack.can_gateway.settings import GatewayOptions
from telestack.core.runtime import Logger, get_logger

__all__ = ["DatabaseWatcher", "DecoderSet"]


def _mtimes(paths: list[Path]) -> dict[Path, float | None]:
    result: dict[Path, float | None] = {}
    for path in paths:
        try:
            result[path] = path.stat().st_mtime_ns
        except OSError:
            result[path] = None
    return result


class DecoderSet:
    """Compiled decoders for every bus; raises `DatabaseError` or `MappingError` when built from bad input."""

    def __init__(self, options: GatewayOptions, bus_names: list[str] | None = None) -> None:
        self.options = options
        names = [bus.name for bus in options.buses] + list(bus_names or [])
        self.files = sorted({path for name in names for path in options.databases_of(name)} | set(options.databases))
        self.mtimes = _mtimes(self.files)
        self._loaded: dict[Path, Database] = dict(zip(self.files, load_databases(self.files), strict=True))
        self._buses: dict[str, BusDecoder] = {}
        for name in dict.fromkeys(names):
            self.for_bus(name)
        defined = {m.name for db in self._loaded.values() for m in db.messages}
        missing = sorted(set(options.mapping) - defined)
        if missing:
            raise MappingError(f"can_gateway.mapping names messages no database defines: {', '.join(missing)}")

    def for_bus(self, name: str) -> BusDecoder:
        decoder = self._buses.get(name)
        if decoder is None:
            paths = self.options.databases_of(name)
            missing = [p for p in paths if p not in self._loaded]
            if missing:
                self._loaded.update(zip(missing, load_databases(missing), strict=True))
            decoder = compile_bus(
                [self._loaded[p] for p in paths],
                vehicle=self.options.vehicle,
                bus=name,
                mapping=self.options.mapping,
                choices=self.options.choices,
                mux_tag=self.options.mux_tag,
            )
            self._buses[name] = decoder
        return decoder

    @property
    def bus_names(self) -> list[str]:
        return list(self._buses)

    def changed(self) -> bool:
        return _mtimes(self.files) != self.mtimes


class DatabaseWatcher:
    """Polls the database files every `interval_s`; `take()` returns a freshly built set once, after a change."""

    def __init__(self, current: DecoderSet, interval_s: float, log: Logger | None = None) -> None:
        self.interval_s = interval_s
        self.log: Logger = log if log is not None else get_logger("can-gateway")
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None
        self._current = current
        self._ready: DecoderSet | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="can-dbc-watcher", daemon=True)

    def start(self) -> DatabaseWatcher:
        if self.interval_s > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def take(self) -> DecoderSet | None:
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    def check_now(self) -> None:
        """One check, in the caller's thread (tests, and the watcher's own loop)."""
        current = self._current
        if not current.changed():
            return
        seen = _mtimes(current.files)
        try:
            fresh = DecoderSet(current.options, current.bus_names)
        except CanGatewayError as exc:
            current.mtimes = seen  # do not retry the same broken file every interval
            self.failures += 1
            self.last_error = str(exc)
            self.log.error("database reload failed; keeping the running decoders", error=str(exc))
            return
        self._current = fresh
        self.reloads += 1
        with self._lock:
            self._ready = fresh
        self.log.info("databases reloaded", files=[str(p) for p in fresh.files], buses=fresh.bus_names)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_now()
