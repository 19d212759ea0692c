"""One way for integration tests to run a service in-process: `RunningService`, any `Service` on a thread."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from telestack.core.runtime import Shutdown
from telestack.core.service import Service

__all__ = ["RunningService"]

S = TypeVar("S", bound=Service)


class RunningService(Generic[S]):
    """`service.run(shutdown)` on a daemon thread of the test process; `stop()` sets the shutdown, waits, closes.

    What `run` raised is kept in `errors` (a test asserts on it); its exit status in `status`.
    """

    def __init__(self, service: S) -> None:
        self.service = service
        self.shutdown = Shutdown()
        self.status: int | None = None
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name=f"{service.name}-under-test", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.status = self.service.run(self.shutdown)
        except BaseException as exc:
            self.errors.append(exc)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout_s: float = 60) -> int | None:
        """Stop the service (once is enough: later calls only close again, a no-op); its exit status."""
        self.shutdown.set("test done")
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"{self.service.name} did not stop within {timeout_s} s"
        self.service.close()
        return self.status
