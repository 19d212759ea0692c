"""The one skeleton every long-running telestack service follows: build from settings, run until shutdown, close.

    command.run(args)
      └─ run_service(name, settings, build, http=...)
           configure logging ─ route SIGTERM/SIGINT to a Shutdown ─ serve /healthz and /metrics on `http`
           with build(log) as service:          # a `Service`: clients opened, topics checked
               /healthz reports service.health(), /metrics serves service.metrics.registry
               status = service.run(shutdown)   # until shutdown is set (or the work ran out)
           # service.close() ran (idempotent) ─ HTTP server stopped ─ signal handlers and logging restored

The lifecycle is python-can's ``BusABC``: `ServiceBase.close` runs its `_close` once however often it is called,
and the service is a context manager so a failure between build and run still closes what was opened.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from telestack.core.metrics import ServiceMetrics
from telestack.core.runtime import Check, HealthServer, Logger, Shutdown, configure_logging, get_logger
from telestack.core.settings import HttpSettings, TelestackSettings

__all__ = ["Check", "Service", "ServiceBase", "run_service"]


@runtime_checkable
class Service(Protocol):
    """What `run_service` runs."""

    name: str

    @property
    def metrics(self) -> ServiceMetrics:
        """The service's own metrics: /metrics serves ``metrics.registry``."""
        ...

    def health(self) -> list[Check]:
        """The service's health checks, for /healthz (all ok → 200, else 503)."""
        ...

    def run(self, shutdown: Shutdown) -> int:
        """Work until `shutdown` is set (or there is nothing left to do); the process exit status."""
        ...

    def close(self) -> None:
        """Release what the service opened; safe to call more than once."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class ServiceBase(abc.ABC):
    """A `Service` with the lifecycle written once: idempotent `close` around `_close`, context manager."""

    name: str = "service"
    _closed: bool = False

    def health(self) -> list[Check]:
        return []

    @abc.abstractmethod
    def run(self, shutdown: Shutdown) -> int: ...

    def _close(self) -> None:  # noqa: B027 - an optional hook, as BusABC's _apply_filters
        """Release resources; called once by `close`."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def run_service(
    name: str,
    settings: TelestackSettings,
    build: Callable[[Logger], Service],
    *,
    http: HttpSettings | None,
) -> int:
    """Run the service `build(log)` returns, as a process: the skeleton in this module's docstring.

    `http` is where /healthz and /metrics are served; None for a service that serves them itself (the actuator).
    /metrics serves the service's own registry (``service.metrics.registry``) once it is built; until then, only
    the process metrics of a `new_registry`. Returns the service's exit status.
    """
    logs = configure_logging(settings.log, name)  # restored below, after the last log line
    log = get_logger(name)
    shutdown = Shutdown().install()  # uninstalled below, after the log line that reads its reason
    health: HealthServer | None = None
    try:
        if http is not None:
            health = HealthServer(http).start()
            log.info("started", health=f"http://{http.host}:{health.port}/healthz")
        with build(log) as service:
            if health is not None:
                health.registry = service.metrics.registry
                health.add_checks(service.name, service.health)
            return service.run(shutdown)
    finally:
        if health is not None:
            health.stop()
        shutdown.uninstall()
        log.info("stopped", reason=shutdown.reason or "loop ended")
        logs.restore()
