"""The service skeleton: idempotent close, context manager, and `run_service` serving health and the service's own
metrics, and restoring signals."""

from __future__ import annotations

import os
import signal
import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from telestack.core.metrics import ServiceMetrics
from telestack.core.runtime import Check, Logger, Shutdown
from telestack.core.service import Service, ServiceBase, run_service
from telestack.core.settings import HttpSettings, LogSettings, TelestackSettings


class ProbeMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.runs = Counter("telestack_probe_runs", "runs of the probe", registry=self.registry)


class Probe(ServiceBase):
    """A service that records what happened to it; `run` calls `body` with itself and the shutdown."""

    name = "probe"

    def __init__(self, body: object = None) -> None:
        self.metrics = ProbeMetrics()
        self.closes = 0
        self.body = body
        self.seen: dict[str, object] = {}

    def health(self) -> list[Check]:
        return [Check("thing", True, "fine"), Check("other", False, "broken")]

    def run(self, shutdown: Shutdown) -> int:
        self.metrics.runs.inc()
        if callable(self.body):
            return int(self.body(self, shutdown))
        return 3

    def _close(self) -> None:
        self.closes += 1


def settings() -> TelestackSettings:
    return TelestackSettings(log=LogSettings(level="WARNING", format="console"))


def test_close_runs_once_and_the_context_manager_closes_on_error() -> None:
    service = Probe()
    assert isinstance(service, Service)
    service.close()
    service.close()
    assert service.closes == 1 and service.closed
    other = Probe()
    with pytest.raises(RuntimeError), other:
        raise RuntimeError("between build and run")
    assert other.closes == 1


def test_run_service_serves_the_service_health_and_metrics_and_returns_its_status() -> None:
    built: list[Probe] = []

    def body(service: Probe, shutdown: Shutdown) -> int:
        port = service.seen["port"]
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        service.seen["status"] = response.status_code
        service.seen["checks"] = response.json()["checks"]
        service.seen["metrics"] = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return 7

    with socket.socket() as sock:  # a free port the service can be told (port 0 would hide it)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def build(log: Logger) -> Probe:
        service = Probe(body)
        service.seen["port"] = port
        built.append(service)
        return service

    status = run_service("probe", settings(), build, http=HttpSettings(host="127.0.0.1", port=port))
    assert status == 7
    (service,) = built
    assert service.closes == 1
    assert service.seen["status"] == 503
    assert service.seen["checks"] == {
        "thing": {"ok": True, "detail": "fine"},
        "other": {"ok": False, "detail": "broken"},
    }
    # /metrics is the service's own registry, with the process metrics the global registry used to add
    metrics = str(service.seen["metrics"])
    assert "telestack_probe_runs_total 1.0" in metrics.splitlines()
    assert "process_cpu_seconds_total" in metrics and "python_info" in metrics and "python_gc_" in metrics
    with pytest.raises(httpx.ConnectError):  # the HTTP server is stopped
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_run_service_restores_the_signal_handlers_it_replaced() -> None:
    """Shutdown.install replaced SIGTERM/SIGINT handlers for good; a service run in a test process leaked them."""

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not expected to be called")

    previous = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:

        def body(service: Probe, shutdown: Shutdown) -> int:
            os.kill(os.getpid(), signal.SIGTERM)
            assert shutdown.wait(5)
            return 0 if shutdown.reason == "SIGTERM" else 1

        assert run_service("probe", settings(), lambda log: Probe(body), http=None) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_run_service_closes_the_service_when_run_raises() -> None:
    built: list[Probe] = []

    def body(service: Probe, shutdown: Shutdown) -> int:
        raise RuntimeError("crash")

    def build(log: Logger) -> Probe:
        built.append(Probe(body))
        return built[-1]

    with pytest.raises(RuntimeError, match="crash"):
        run_service("probe", settings(), build, http=None)
    assert built[0].closes == 1
    assert signal.getsignal(signal.SIGTERM) is not None
