"""Where each service's time goes under load: py-spy samples every Python service for a while in the steady
state (``--nonblocking``: the service is never paused) and the collapsed stacks are summarised per stage.

Summary per service: the functions holding the most samples, by their own time and including callees. py-spy
leaves out threads that sleep (in select, a lock, a blocking read); a thread that is runnable but waiting for a core
counts, so on a saturated machine ``active_threads`` (the average number of threads sampled active) exceeds the
process's CPU use (the report's CPU column, from /proc, is the measure of that).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Profiler", "summarise"]

RATE_HZ = 100


@dataclass
class Profiler:
    """py-spy on every pid of `pids`, `seconds` long, starting `after_s` from `start()`."""

    pids: dict[str, int]
    out: Path
    after_s: float
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def available() -> str | None:
        """The py-spy executable, or None (it is in the dev extras: ``pip install -e '.[dev]'``)."""
        beside = Path(sys.executable).parent / "py-spy"  # the venv's, when its bin/ is not on PATH
        return str(beside) if beside.exists() else shutil.which("py-spy")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="profiler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._stop.wait(self.after_s):
            return
        exe = self.available()
        assert exe is not None
        self.out.mkdir(parents=True, exist_ok=True)
        running = {}
        for name, pid in self.pids.items():
            path = self.out / f"profile-{name}.txt"
            command = [exe, "record", "--pid", str(pid), "--duration", str(int(self.seconds)), "--rate", str(RATE_HZ)]
            command += ["--nonblocking", "--format", "raw", "--output", str(path)]
            running[name] = (path, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for name, (path, process) in running.items():
            _, err = process.communicate()
            if process.returncode == 0 and path.exists():
                self.files[name] = path
            else:
                self.errors[name] = err.decode(errors="replace").strip()[-300:]

    def stop(self) -> dict[str, Any]:
        """Wait for the recordings (cut short if the load ended first) and summarise each."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.after_s + self.seconds + 30)
        summary: dict[str, Any] = {name: summarise(path, self.seconds) for name, path in self.files.items()}
        for name, error in self.errors.items():
            summary[name] = {"error": error}
        return summary


def _function(frame: str) -> str:
    """``send (confluent_kafka/x.py:12)`` → ``confluent_kafka/x.py:send``: the function, without the line."""
    name, _, where = frame.partition(" (")
    return f"{where.rsplit(':', 1)[0].rstrip(')')}:{name}" if where else name


def summarise(path: Path, seconds: float, top: int = 8) -> dict[str, Any]:
    """Average active threads and the top functions of py-spy's collapsed stacks (``a;b;c count`` lines)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def share(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "active_threads": round(total / (RATE_HZ * seconds), 2),
        "samples": total,
        "top_own_pct": {name: share(n) for name, n in own.most_common(top)},
        "top_inclusive_pct": {name: share(n) for name, n in inclusive.most_common(top + 4)},
        "file": str(path),
    }
