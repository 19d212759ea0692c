"""Runtime: /healthz and /metrics over real HTTP, signals set the shutdown event."""

from __future__ import annotations

import logging
import os
import signal

import httpx
import pytest
import structlog
from prometheus_client import CollectorRegistry, Counter

from telestack.core.runtime import HealthServer, Shutdown, configure_logging
from telestack.core.settings import HttpSettings, LogSettings


def test_healthz_reports_each_check_and_fails_when_one_fails() -> None:
    registry = CollectorRegistry()
    Counter("telestack_demo_total", "demo counter", registry=registry).inc(3)
    state = {"kafka": True}
    server = HealthServer(HttpSettings(port=0), registry=registry)
    server.add_check("kafka", lambda: (state["kafka"], "connected" if state["kafka"] else "broker down"))
    server.add_check("broken", lambda: (True, "ok"))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        response = httpx.get(f"{base}/healthz")
        assert response.status_code == 200
        assert response.json()["checks"]["kafka"] == {"ok": True, "detail": "connected"}
        state["kafka"] = False
        response = httpx.get(f"{base}/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "failing"
        metrics = httpx.get(f"{base}/metrics")
        assert "telestack_demo_total 3.0" in metrics.text
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()


def test_a_probe_that_raises_is_unhealthy_not_a_crash() -> None:
    server = HealthServer(HttpSettings(port=0), registry=CollectorRegistry())
    server.add_check("boom", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    healthy, body = server.health()
    assert not healthy
    assert "ZeroDivisionError" in body["checks"]["boom"]["detail"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_shutdown(signum: int) -> None:
    previous = signal.getsignal(signum)
    shutdown = Shutdown().install()
    try:
        os.kill(os.getpid(), signum)
        assert shutdown.wait(5)
        assert shutdown.reason == signal.Signals(signum).name
    finally:
        signal.signal(signum, previous)


def test_a_client_that_hung_up_is_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """A healthcheck that gave up before the answer made the server print a BrokenPipeError traceback."""
    server = HealthServer(HttpSettings(port=0), registry=CollectorRegistry())
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        server._httpd.handle_error(None, ("127.0.0.1", 40000))
    assert capsys.readouterr().err == ""
    try:
        raise ValueError("a real bug")
    except ValueError:
        server._httpd.handle_error(None, ("127.0.0.1", 40000))
    assert "ValueError: a real bug" in capsys.readouterr().err
    server._httpd.server_close()


def test_uninstall_restores_the_handlers_install_replaced() -> None:
    """Shutdown.install replaced SIGTERM/SIGINT handlers for good; a service run in a test process leaked them."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    shutdown = Shutdown().install()
    assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    shutdown.install()  # twice: still the first handlers to restore
    shutdown.uninstall()
    shutdown.uninstall()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_configure_logging_gives_back_what_it_changed() -> None:
    """structlog's configuration, the `service` context variable and the root logger's handlers and level are
    the process's: a command run in-process (a test, a benchmark) must leave them as it found them."""
    root = logging.getLogger()
    before = (structlog.get_config(), structlog.contextvars.get_contextvars(), list(root.handlers), root.level)
    with configure_logging(LogSettings(level="DEBUG", format="json"), "probe") as configured:
        assert structlog.contextvars.get_contextvars()["service"] == "probe"
        assert structlog.get_config() != before[0]
        assert root.level == logging.WARNING and len(root.handlers) >= len(before[2])
    assert (structlog.get_config(), structlog.contextvars.get_contextvars(), root.handlers, root.level) == before
    configured.restore()  # idempotent: a second restore changes nothing
    assert structlog.get_config() == before[0]
