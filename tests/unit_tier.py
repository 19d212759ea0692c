"""Keeps the unit tier honest: a test not marked ``integration`` starts no server.

`make test-unit` runs without any server; a test that starts one there (even by accident, through a helper or a
shell script) fails, naming the program, instead of quietly making the tier slow and dependent on `make setup`.
Two nets catch it while such a test runs (setup, call and teardown):

- an audit hook (PEP 578) on every process this interpreter starts (``subprocess``, ``os.posix_spawn``,
  ``os.exec*``), whatever the path to the program: the program, or the script or ``-m`` module an interpreter or
  shell runs, is compared with `SERVER_PROGRAMS`;
- for the programs those processes start in turn (``exec mosquitto`` in an entrypoint script), stand-ins named
  like the servers go first on ``PATH``: they log their name and exit 97 without starting anything.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Servers and engines, and the telestack command (its services are servers; its tools run in-process in unit tests).
SERVER_PROGRAMS = frozenset(
    {
        "java",
        "kafka-server-start.sh",
        "mosquitto",
        "influxd",
        "telegraf",
        "docker",
        "dockerd",
        "containerd",
        "telestack",
    }
)
_SHELLS = ("sh", "bash", "dash", "env")
STAND_IN_EXIT = 97


class UnitTierGuard:
    """Records the server programs started while `active`; `stand_ins` is the directory of PATH stand-ins."""

    def __init__(self, directory: Path) -> None:
        self.active = False
        self.started: list[str] = []
        self.stand_ins = directory / "bin"
        self.log = directory / "started.log"
        self.stand_ins.mkdir(parents=True, exist_ok=True)
        for name in SERVER_PROGRAMS:
            stand_in = self.stand_ins / name
            stand_in.write_text(
                "#!/bin/sh\n"
                f'echo "{name} $*" >> "{self.log}"\n'
                f'echo "telestack unit tier: a test not marked integration started {name}" >&2\n'
                f"exit {STAND_IN_EXIT}\n"
            )
            stand_in.chmod(0o755)
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event not in ("subprocess.Popen", "os.posix_spawn", "os.exec"):
            return
        argv = args[1]
        program = server_program([argv] if isinstance(argv, str | bytes | os.PathLike) else list(argv))
        if program is not None:
            self.started.append(program)
            raise RuntimeError(
                f"a test not marked integration started {program}: mark it (pytest.mark.integration, or the lists "
                "in tests/conftest.py) so that make test-unit stays server-free"
            )

    def start(self) -> None:
        self.active = True
        self.take_started()
        os.environ["PATH"] = f"{self.stand_ins}{os.pathsep}{os.environ.get('PATH', '')}"

    def stop(self) -> None:
        self.active = False
        path = os.environ.get("PATH", "").split(os.pathsep)
        os.environ["PATH"] = os.pathsep.join(p for p in path if p != str(self.stand_ins))

    def take_started(self) -> list[str]:
        """The server programs started since the last call (the audit hook's, then the stand-ins')."""
        started, self.started = self.started, []
        if self.log.exists():
            started += self.log.read_text().split("\n")[:-1]
            self.log.unlink()
        return started


def server_program(argv: Sequence[Any]) -> str | None:
    """The server `argv` starts, if any: its program, or what an interpreter or shell in front of it runs.

    >>> server_program(["/root/.cache/telestack/influxdb/bin/influxd", "--bolt-path=x"])
    'influxd'
    >>> server_program(["sh", "-c", "exec mosquitto -c m.conf"]), server_program(["python", "-m", "telestack", "x"])
    ('mosquitto', 'telestack')
    >>> server_program(["env", "A=1", "/usr/bin/python3.11", "-u", "-m", "telestack", "alerting"])
    'telestack'
    >>> server_program(["/usr/bin/python3", "-c", "print(1)"]), server_program(["shellcheck", "telegraf"])
    (None, None)
    """
    words = [os.fsdecode(word) for word in argv]
    while words:
        name = os.path.basename(words[0])
        if name in SERVER_PROGRAMS:
            return name
        python = re.fullmatch(r"python[0-9.]*", name) is not None
        if not python and name not in _SHELLS:
            return None
        words = words[1:]
        if words[:1] == ["-m"]:
            words = words[1:]
        elif words[:1] == ["-c"] and words[1:] and not python:
            words = words[1].replace("exec ", "").split()  # a shell command line: its first word
        while words and (words[0].startswith("-") or (name == "env" and "=" in words[0])):
            words = words[1:]  # options, and env's variables
    return None
