"""Processes of a load run: the telestack services (started, killed with SIGKILL, restarted, probed on
/healthz and /metrics) and what any process costs (CPU seconds and resident memory, from /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["CLOCK_TICKS", "ProcessUsage", "ServiceProcess", "parse_metrics", "usage_of"]

TELESTACK = str(Path(sys.executable).with_name("telestack"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    cpu_s: float  # user + system CPU time since the process started
    rss_bytes: int


def usage_of(pid: int) -> ProcessUsage | None:
    """CPU time and RSS of a live process (threads included); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])
    return ProcessUsage((utime + stime) / CLOCK_TICKS, int(statm.split()[1]) * PAGE_SIZE)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value}, with counters' ``_total`` kept as exposed."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(metrics: dict[str, float], name: str) -> float:
    """Sum of a metric over all its label sets."""
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


class ServiceProcess:
    """One ``telestack <command>`` process with its /healthz port; restartable after a kill."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], http_port: int, log_dir: Path) -> None:
        self.name = name
        self.command = [TELESTACK, *command]
        self.env = env
        self.http_port = http_port
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.cpu_before_restarts = 0.0  # CPU of the instances that were killed, so totals cover the run
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=2)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, no commit."""
        if self.process is not None and self.process.poll() is None:
            usage = usage_of(self.process.pid)
            if usage is not None:
                self.cpu_before_restarts += usage.cpu_s
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait (the service drains); SIGKILL past `timeout_s`. Returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            usage = usage_of(self.process.pid)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if usage is not None:
                self.cpu_before_restarts += usage.cpu_s
        return self.process.returncode

    def health(self) -> tuple[bool, str]:
        """200 with at least one check: a service answers /healthz before it has registered its checks."""
        try:
            response = self._http.get("/healthz")
            checks = response.json().get("checks") or {}
        except (httpx.HTTPError, ValueError) as exc:
            return False, f"no answer: {type(exc).__name__}"
        return response.status_code == 200 and bool(checks), response.text[:300]

    def check_alive(self) -> None:
        """Raise if the process exited (whatever may answer on its port: another process could hold it)."""
        if not self.alive():
            code = self.process.returncode if self.process is not None else None
            raise RuntimeError(f"{self.name} exited with status {code}: see {self.log_path}")

    def wait_healthy(self, timeout_s: float = 30) -> float:
        """Seconds until /healthz said 200 (and the process is alive); raises TimeoutError past `timeout_s`."""
        started = time.monotonic()
        detail = ""
        while time.monotonic() - started < timeout_s:
            self.check_alive()
            ok, detail = self.health()
            if ok:
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not healthy within {timeout_s:.0f} s: {detail}")

    def metrics(self) -> dict[str, float]:
        try:
            response = self._http.get("/metrics")
        except httpx.HTTPError:
            return {}
        return parse_metrics(response.text) if response.status_code == 200 else {}

    def usage(self) -> ProcessUsage | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return usage_of(self.process.pid)

    def close(self) -> None:
        self.stop()
        self._http.close()
