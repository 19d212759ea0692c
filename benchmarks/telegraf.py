"""Telegraf beside telestack in the benchmarks: the binary `make setup` built, one agent process, its CPU.

The binary comes from ``install-telegraf.sh`` (built once from Telegraf's Go module with the plugins the
stack and these benchmarks use: mqtt_consumer, kafka_consumer, outputs.kafka, outputs.influxdb_v2, parsers
json_v2 and influx). A benchmark never builds it: without it, it fails and says to run ``make setup``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from telestack.core.errors import ServerError
from telestack.native.servers import run_script

__all__ = ["TelegrafAgent", "telegraf_binary", "toml_string"]


def telegraf_binary() -> Path:
    """The cached Telegraf; SystemExit with the fix when `make setup` has not built it."""
    try:
        return Path(run_script("install-telegraf.sh", env={"TELESTACK_NO_BUILD": "1"}))
    except ServerError as exc:
        raise SystemExit(f"{exc}: build Telegraf once with 'make setup' to compare with it") from exc


def toml_string(value: str) -> str:
    """A TOML basic string.

    >>> toml_string('a"b\\\\c')
    '"a\\\\"b\\\\\\\\c"'
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TelegrafAgent:
    """One ``telegraf --config`` process; its log lines, each stamped (monotonic s) as it is read, in `lines`
    and in ``<workdir>/<name>.log``. Telegraf's log only has whole seconds; the stamps time its writes."""

    def __init__(self, workdir: Path, name: str, config: str) -> None:
        self.config = workdir / f"{name}.conf"
        self.config.write_text(config)
        self.config.chmod(0o600)  # it holds the broker's password or the InfluxDB token
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.lines: list[tuple[float, str]] = []  # appended by the reader thread only
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.lines = []
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(telegraf_binary()), "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with open(self.log_path, "ab") as log:
            for raw in process.stdout:
                self.lines.append((time.monotonic(), raw.decode(errors="replace")))
                log.write(raw)

    def log_text(self) -> str:
        return "".join(text for _, text in list(self.lines))

    def wait_log(self, needle: str, timeout_s: float = 60) -> None:
        """Until `needle` appears in the agent's log (e.g. the MQTT input's "Connected")."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.log_text():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Telegraf did not log {needle!r} within {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.05)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"Telegraf exited with {self.process.returncode}:\n{self.tail()}")

    def tail(self) -> str:
        return self.log_text()[-3000:]

    def cpu_s(self) -> float:
        """User + system CPU seconds of the agent so far (every thread), from /proc."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self._reader is not None:
            self._reader.join(10)
