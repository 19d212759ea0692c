"""Line protocol speed: serialize and parse, in lines per second, on typical telemetry lines; and parse speed on
adversarial payloads (unbalanced quotes, quoted comments, long backslash runs), in bytes per second, which must
not fall with the payload's size (it fell quadratically before issue 12).

Run with ``make bench-lineproto``; the last line of output is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable

from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import Point, format_point, parse_lines

__all__ = ["main"]


def _sample(n: int) -> list[Point]:
    base = 1_700_000_000_000_000_000
    points = []
    for i in range(n):
        if i % 3 == 0:  # a decoded CAN frame
            points.append(
                Point(
                    "EngineData",
                    {"vehicle": "ved-01", "bus": "can0"},
                    {"rpm": 3000.0 + i % 97, "throttle": 12.5, "coolant_temp": 88.25, "gear": 3},
                    base + i * 10_000_000,
                )
            )
        elif i % 3 == 1:  # a fermenter reading
            points.append(
                Point(
                    "fermenter",
                    {"device": f"f{i % 8}", "site": "brasserie"},
                    {"temperature": 18.5, "setpoint": 18.0},
                    base + i,
                )
            )
        else:  # a meter with a string field and escapes
            points.append(
                Point(
                    "teleinfo",
                    {"meter": "Eco devices", "site": "lab,1"},
                    {"PAPP": 1520, "PTEC": "HP..", "BASE": 123456789},
                    base + i,
                )
            )
    return points


def _adversarial(size: int) -> list[str]:
    """Payloads of about `size` characters that a careless splitter or scanner handles in quadratic time."""
    return [
        '# don"t panic\n' + "cpu value=1 1\n" * (size // 14),
        'm s="' + "x=1,y\n" * (size // 6),
        "m" + "\\" * size + " v=1",
        "m," + "t\\,=v\\," * (size // 8) + "x=1 v=1",
        '# a=b "c\n' * (size // 9),
    ]


def _parse_all(payloads: list[str]) -> None:
    for text in payloads:
        with contextlib.suppress(LineProtocolError):
            parse_lines(text)


def _rate(work: Callable[[], object], lines: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return lines / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lineproto", description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000, help="lines per run (default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported (default 5)")
    args = parser.parse_args(argv)

    points = _sample(args.lines)
    text = "\n".join(format_point(p) for p in points)
    escaped = text.replace("EngineData", "Engine\\ Data")  # forces the escape-aware parser on 1 line in 3
    figures = {
        "lines": args.lines,
        "serialize_lines_per_s": round(_rate(lambda: [format_point(p) for p in points], args.lines, args.repeat)),
        "parse_lines_per_s": round(_rate(lambda: parse_lines(text), args.lines, args.repeat)),
        "parse_escaped_lines_per_s": round(_rate(lambda: parse_lines(escaped), args.lines, args.repeat)),
    }
    for size in (32_768, 262_144):  # 256 KiB: the MQTT bridge's largest payload
        payloads = _adversarial(size)
        total = sum(len(p) for p in payloads)
        figures[f"parse_adversarial_{size // 1024}k_bytes_per_s"] = round(
            _rate(lambda payloads=payloads: _parse_all(payloads), total, args.repeat)
        )
    sys.stdout.write(
        f"serialize: {figures['serialize_lines_per_s']:>10,} lines/s\n"
        f"parse:     {figures['parse_lines_per_s']:>10,} lines/s\n"
        f"parse (1/3 lines escaped): {figures['parse_escaped_lines_per_s']:,} lines/s\n"
        f"parse adversarial 32 KiB payloads:  {figures['parse_adversarial_32k_bytes_per_s']:,} bytes/s\n"
        f"parse adversarial 256 KiB payloads: {figures['parse_adversarial_256k_bytes_per_s']:,} bytes/s\n"
    )
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
