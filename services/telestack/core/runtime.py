"""What every service process shares: structured logs, graceful shutdown, ``/healthz`` and ``/metrics``.

`telestack.core.service.run_service` puts these together for every service: it calls `configure_logging`,
routes SIGTERM and SIGINT to a `Shutdown` (and restores the previous handlers after), serves the service's
`Check` list on a `HealthServer`, and runs the service until ``shutdown.is_set()``; then it drains.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, cast

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from telestack.core.metrics import new_registry
from telestack.core.settings import HttpSettings, LogSettings

__all__ = [
    "Check",
    "HealthServer",
    "Logger",
    "LoggingConfiguration",
    "Shutdown",
    "configure_logging",
    "get_logger",
    "silent_logger",
]

Logger = structlog.typing.FilteringBoundLogger
"""The one logger type services take: what `get_logger` returns once `configure_logging` ran."""


def get_logger(name: str) -> Logger:
    return cast(Logger, structlog.get_logger(name))


def _drop(logger: Any, method: str, event: Any) -> Any:
    raise structlog.DropEvent


def silent_logger() -> Logger:
    """A `Logger` that writes nothing: for a one-shot command whose output is its result (``--once``)."""
    return cast(Logger, structlog.wrap_logger(None, processors=[_drop]))


class LoggingConfiguration:
    """What `configure_logging` changed in the process, and `restore` to put it back (also as a context manager).

    structlog's configuration, the ``service`` context variable and the stdlib root logger are process-wide: a
    command run inside another program (a test, a benchmark) gives them back as it found them.
    """

    def __init__(self, structlog_config: dict[str, Any], tokens: Any, handlers: list[logging.Handler], level: int):
        self._structlog_config = structlog_config
        self._tokens = tokens
        self._handlers = handlers
        self._root_level = level
        self._restored = False

    def restore(self) -> None:
        """Idempotent."""
        if self._restored:
            return
        self._restored = True
        structlog.configure(**self._structlog_config)
        structlog.contextvars.reset_contextvars(**self._tokens)
        root = logging.getLogger()
        for handler in self._handlers:
            root.removeHandler(handler)
        root.setLevel(self._root_level)

    def __enter__(self) -> LoggingConfiguration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def configure_logging(settings: LogSettings, service: str) -> LoggingConfiguration:
    """Structured logs to stderr: JSON lines for machines, key=value for a terminal.

    A process that is the command can ignore the result; ``with configure_logging(...):`` restores on the way out.
    """
    use_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    level = logging.getLevelName(settings.level)
    root = logging.getLogger()
    before, root_level = list(root.handlers), root.level
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    tokens = structlog.contextvars.bind_contextvars(service=service)
    # Third-party libraries log through the stdlib; keep them at WARNING on stderr.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(name)s %(message)s")
    added = [handler for handler in root.handlers if handler not in before]
    return LoggingConfiguration(previous, tokens, added, root_level)


class Shutdown:
    """Set by SIGTERM/SIGINT (or by code); services poll `is_set` or `wait` in their loop.

    A command that owns the process's signals uses it as a context manager (``with Shutdown() as shutdown:``),
    which installs the handlers and restores the ones it found on the way out, as `run_service` does.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> Shutdown:
        """Route SIGTERM and SIGINT here (main thread only). A second signal exits at once.

        `uninstall` puts back the handlers found here."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.signal(signum, self._on_signal)
            self._previous.setdefault(signum, previous)
        return self

    def uninstall(self) -> None:
        """Restore the handlers `install` replaced (idempotent)."""
        while self._previous:
            signum, previous = self._previous.popitem()
            signal.signal(signum, previous)

    def __enter__(self) -> Shutdown:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set():
            raise SystemExit(128 + signum)
        self.set(signal.Signals(signum).name)

    def set(self, reason: str = "requested") -> None:
        self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._event.wait(timeout_s)


@dataclass(frozen=True, slots=True)
class Check:
    """One named result of a health probe: the one health shape every service reports."""

    name: str
    ok: bool
    detail: str

    @classmethod
    def of(cls, name: str, probe: Callable[[], tuple[bool, str]]) -> Check:
        """The result of `probe`; a probe that raises is unhealthy, not a crashed endpoint."""
        try:
            ok, detail = probe()
        except Exception as exc:
            return cls(name, False, f"probe raised {exc!r}")
        return cls(name, ok, detail)


class _QuietHTTPServer(ThreadingHTTPServer):
    """A client that hangs up early (a healthcheck that timed out) is not an error worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipeError, ConnectionResetError
            return
        super().handle_error(request, client_address)


class HealthServer:
    """Serves ``GET /healthz`` (200 or 503 with a JSON body naming each check) and ``GET /metrics``.

    /metrics serves `registry` (a `new_registry`, process metrics only, unless given); `run_service` sets it to the
    service's own once the service is built.
    """

    def __init__(
        self,
        settings: HttpSettings,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.sources: list[tuple[str, Callable[[], list[Check]]]] = []
        self.registry: CollectorRegistry = registry if registry is not None else new_registry()
        self.started_at = time.time()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    healthy, body = server.health()
                    self._send(200 if healthy else 503, "application/json", json.dumps(body).encode())
                elif self.path.split("?")[0] == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.registry))
                else:
                    self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: scraped every few seconds
                return

        self._httpd = _QuietHTTPServer((settings.host, settings.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def add_check(self, name: str, probe: Callable[[], tuple[bool, str]]) -> None:
        """One check from an `(ok, detail)` probe: `add_checks` with a source of one `Check`."""
        self.add_checks(name, lambda: [Check.of(name, probe)])

    def add_checks(self, name: str, source: Callable[[], list[Check]]) -> None:
        """Report every `Check` that `source` returns (a service's `health`); if it raises, one failing `name`."""
        self.sources.append((name, source))

    def results(self) -> list[Check]:
        results: list[Check] = []
        for name, source in self.sources:
            try:
                results.extend(source())
            except Exception as exc:  # a broken probe is an unhealthy service, not a crashed endpoint
                results.append(Check(name, False, f"probe raised {exc!r}"))
        return results

    def health(self) -> tuple[bool, dict[str, Any]]:
        results = self.results()
        healthy = all(check.ok for check in results)
        checks = {check.name: {"ok": check.ok, "detail": check.detail} for check in results}
        return healthy, {"status": "ok" if healthy else "failing", "checks": checks}

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
