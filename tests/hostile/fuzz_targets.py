"""Coverage-guided fuzzing (atheris, i.e. libFuzzer) of the code every input goes through first.

    python tests/hostile/fuzz_targets.py <target> [libFuzzer options, e.g. -runs=20000 -max_total_time=10]

Targets: ``lineproto`` (parse, format, parse again), ``mqtt`` (the bridge's mapping with the hostile rules),
``can`` (the gateway's decoder with the project DBC), ``ingest`` (the actuator's edge-box ingest checks).
Each asserts what `tests/hostile/test_*.py` assert; libFuzzer stops at the first input that breaks it,
prints the traceback and saves the input as ``crash-<sha1>`` in the working directory, and exits non-zero.
`test_fuzz.py` runs each target for a bounded time.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["telestack"]):
    from telestack.actuator.errors import RequestError
    from telestack.actuator.ingest import IngestOptions, prepare_batch
    from telestack.can_gateway.decoder import compile_bus, decode_frames, load_databases
    from telestack.core.errors import LineProtocolError
    from telestack.core.lineproto import format_point, parse_line, parse_lines
    from telestack.mqtt_bridge.errors import REASONS, MappingError
    from telestack.mqtt_bridge.mapping import map_message
    from telestack.mqtt_bridge.rules import load_rules

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
from tests.hostile.corpus import FUZZ_TOPICS  # noqa: E402 - after the path is set

RULES = load_rules(REPO / "tests" / "data" / "hostile" / "mqtt_rules.yaml")
TOPICS = list(FUZZ_TOPICS)
CAN_BUS = compile_bus(load_databases([REPO / "config" / "dbc" / "telestack_vehicle.dbc"]), vehicle="v", bus="b")
CAN_KEYS = sorted(CAN_BUS.functions)
INGEST = IngestOptions(site="hq", now_ns=1_700_000_000_000_000_000)


def _checked_lines(text: str) -> None:
    """What a service hands on must be UTF-8 line protocol that parses."""
    text.encode("utf-8")
    parse_lines(text)


def lineproto(data: bytes) -> None:
    try:
        points = parse_lines(data.decode("utf-8"))
    except (UnicodeDecodeError, LineProtocolError):
        return
    for point in points:
        try:
            line = format_point(point)
        except LineProtocolError:
            continue
        assert parse_line(line) == point, (line, point)


def mqtt(data: bytes) -> None:
    if not data:
        return
    topic, payload = TOPICS[data[0] % len(TOPICS)], data[1:]  # first byte: the topic (and so the rule)
    try:
        mapped = map_message(RULES, topic, payload, 1_700_000_000_000_000_000)
    except MappingError as exc:
        assert exc.reason in REASONS and exc.detail
        return
    _checked_lines(mapped.value)


def can(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    frames: list[tuple[float, int, int, bytes]] = []
    while provider.remaining_bytes() > 4 and len(frames) < 8:
        key = provider.PickValueInList(CAN_KEYS) if provider.ConsumeBool() else provider.ConsumeIntInRange(0, 2**32 - 1)
        stamp = 1_700_000_000 + provider.ConsumeIntInRange(-86_400_000, 86_400_000) / 1000
        flags = provider.ConsumeIntInRange(0, 31)
        frames.append((stamp, key, flags, provider.ConsumeBytes(provider.ConsumeIntInRange(0, 72))))
    lines: list[str] = []
    unknown: dict[int, int] = {}
    failed: dict[int, int] = {}
    decode_frames(CAN_BUS, frames, lines, unknown, failed)
    for line in lines:
        for point in parse_lines(line):
            assert all(math.isfinite(v) for v in point.fields.values() if isinstance(v, float))


def ingest(data: bytes) -> None:
    kind = "application/json" if data[:1] in (b"{", b"[") else "text/plain"
    try:
        batch = prepare_batch(data, kind, None, INGEST)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and exc.detail
        return
    for record in batch.records:
        _checked_lines(record.value)


TARGETS = {"lineproto": lineproto, "mqtt": mqtt, "can": can, "ingest": ingest}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
