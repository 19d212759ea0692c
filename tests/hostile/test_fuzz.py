"""Coverage-guided fuzzing with atheris (`fuzz_targets.py`), each target a bounded, seeded run.

The corpus (``tests/data/hostile``) seeds the mutations; a fixed seed and run count keep a run repeatable.
A failure shows libFuzzer's report: the exception and the input that provoked it (``crash-*`` in tmp_path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hostile import corpus
from tests.hostile.test_lineproto import CASES as LINE_CASES

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOPICS = list(corpus.FUZZ_TOPICS)
pytestmark = pytest.mark.slow  # a libFuzzer campaign per target: make test runs them, make test-unit does not

RUNS = {"lineproto": 60_000, "can": 15_000, "mqtt": 30_000, "ingest": 20_000}


def _seeds(target: str, directory: Path) -> None:
    directory.mkdir()
    tokens = {**corpus.time_tokens(1_700_000_000, 1_000), **corpus.time_tokens(1_700_000_000, 1_000_000_000)}
    seeds: list[bytes] = []
    if target == "lineproto":
        seeds = [case["line"].encode() for case in LINE_CASES]
    elif target == "mqtt":
        for case in corpus.load("mqtt_payloads.yaml"):
            topic = case["topic"] if case["topic"] in TOPICS else "nowhere"
            payload = corpus.build(case, "payload", tokens)
            if len(payload) < 4096:
                seeds.append(bytes([TOPICS.index(topic)]) + payload)
    elif target == "ingest":
        seeds = [corpus.build(c, "body", tokens) for c in corpus.load("ingest_bodies.yaml") if "repeat" not in c]
        seeds = [s for s in seeds if len(s) < 4096]
    else:
        seeds = [bytes(range(16)), b"\x00" * 32, b"\xff" * 32]
    for index, seed in enumerate(seeds):
        (directory / f"seed-{index:03d}").write_bytes(seed)


@pytest.mark.parametrize("target", sorted(RUNS))
def test_coverage_guided_fuzzing_finds_nothing(target: str, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    _seeds(target, seeds)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_targets.py"),
            target,
            str(seeds),
            f"-runs={RUNS[target]}",
            "-seed=1",
            "-max_len=4096",
            "-rss_limit_mb=2048",
            "-max_total_time=60",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=180,
        check=False,
    )
    report = proc.stderr[proc.stderr.find("=== Uncaught Python exception") :][:3000]
    assert proc.returncode == 0, f"{target}: libFuzzer found an input that breaks it:\n{report}"
    assert "Done" in proc.stderr, proc.stderr[-2000:]  # it did run its rounds
    assert time.monotonic() - started < 120
