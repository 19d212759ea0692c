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
    args = dict(arg.split("=", 1) for op, arg in instructions if op == "ARG" and "=" in arg)
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], arg) for op, arg in instructions if op == "FROM"]
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


def test_dependencies_come_from_the_lock_file_with_hashes() -> None:
    """A rebuild installs what was tested, not PyPI's newest: requirements.lock, hashes required."""
    assert "--require-hashes -r requirements.lock" in DOCKERFILE
    assert "--no-deps ." in DOCKERFILE
    lock = (ROOT / "requirements.lock").read_text()
    pinned = re.findall(r"^([a-z0-9_.-]+)==", lock, re.M | re.I)
    assert {"confluent-kafka", "paho-mqtt", "fastapi", "cantools"} <= {name.lower() for name in pinned}
    assert lock.count("--hash=sha256:") >= len(pinned)


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "*", "deny everything, then allow what is copied"
    for op, arg in _instructions():
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, source
