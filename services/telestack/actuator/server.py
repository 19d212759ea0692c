"""uvicorn, configured for production from `ActuatorOptions`.

One process, one worker: command state, waiters and timers live in memory (and are rebuilt from Kafka at
start), so more workers would not see each other's commands. No reload, no server header, proxy headers only
when configured, TLS when a certificate is given, a bounded graceful shutdown on SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from telestack.actuator.settings import ActuatorOptions

__all__ = ["ActuatorServer", "uvicorn_config"]

GRACEFUL_SHUTDOWN_S = 15


def uvicorn_config(app: FastAPI, options: ActuatorOptions) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=options.http.host,
        port=options.http.port,
        lifespan="on",
        workers=1,
        reload=False,
        proxy_headers=options.proxy_headers,
        forwarded_allow_ips=options.forwarded_allow_ips,
        root_path=options.root_path,
        server_header=False,
        date_header=True,
        access_log=False,  # the app logs each request itself, structured
        log_config=None,  # keep the process's logging (structlog), not uvicorn's dictConfig
        timeout_keep_alive=5,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ssl_certfile=str(options.tls_certfile) if options.tls_certfile else None,
        ssl_keyfile=str(options.tls_keyfile) if options.tls_keyfile else None,
    )


class ActuatorServer(uvicorn.Server):
    """uvicorn's server, except that a drain after SIGTERM/SIGINT ends the process with status 0.

    uvicorn re-raises the signal once it has drained, so a clean stop would exit as if killed (143), and a
    supervisor could not tell it from a crash.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
