"""services/Dockerfile, checked without a Docker engine: slim base, non-root, every COPY source exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "services" / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in joined.splitlines())
        if line and not line.startswith("#")
    ]


def test_final_stage_is_slim_pinned_and_runs_as_a_non_root_user() -> None:
    instructions = _instructions()
    bases = [arg for op, arg in instructions if op == "FROM"]
    assert all(":" in base.split()[0] and "slim" in base for base in bases), bases
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"


def test_copy_sources_exist_and_entrypoint_is_the_cli() -> None:
    for op, arg in _instructions():
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
    assert '["telestack"]' in DOCKERFILE
