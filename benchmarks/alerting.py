"""Alerting speed: evaluation throughput, and point arrival → notification sent latency.

1. Evaluation: ~100 rules (thresholds, setpoint deviations, windows, rates, no-data, with glob and regex tag
   matchers) over ~1,000 series, fed pre-parsed points through `AlertEngine.observe` (plus clock ticks),
   then the same points as line protocol text (parse + evaluate). Pure CPU, no I/O.
2. Latency: the service in-process on real Kafka with a webhook to a local HTTP receiver; a background
   stream of normal telemetry over 1,000 series; after a warm-up (the service has seen every background
   series), every alert point's send time is compared with the time its notification arrived. Rules use
   ``for: 0`` (the figure excludes `for`, as it should).

Throughput is reported per CPU second of the evaluating process (``points_per_s``): the machine is shared,
and wall time would also count the other processes' turns; ``points_per_s_wall`` is given too.

``ratio_to_car`` sets ``points_per_s`` beside the point rate of seed 001's car at full bus load: three
saturated 1 Mbit/s CAN buses, 27,000 frames/s, each frame one point (one line) as ``make bench-e2e`` sends
them (``car_points_per_s``). Target ≥ 1.5.

Run with ``make bench-alerting``; it uses ``TELESTACK_TEST_ENDPOINTS`` when set, else starts native servers
in a temporary directory. The last line of output is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from telestack.alerting.engine import AlertEngine
from telestack.alerting.rules import parse_rules
from telestack.alerting.service import AlertingService, parse_record
from telestack.alerting.settings import AlertingOptions, AlertingSettings
from telestack.core.kafka import KafkaProducer
from telestack.core.lineproto import Point, format_point
from telestack.core.runtime import Shutdown, configure_logging
from telestack.core.settings import HttpSettings, KafkaSettings, LogSettings, TopicSettings
from telestack.core.topics import TopicLayout, create_topics
from telestack.native.stack import shared_or_own_servers

__all__ = ["main"]

NS = 1_000_000_000
MEASUREMENTS = 10
DEVICES = 100  # per measurement → 1,000 series
FIELDS = ("f0", "f1", "f2", "f3", "f4")
# Seed 001's car at full load (issue 19): 3 buses x ~9,000 classic frames/s, one point per decoded frame.
CAR_POINTS_PER_S = 27_000


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def rules_yaml(count: int = 100) -> str:
    """`count` rules spread over the measurements, 10 per measurement, every condition kind."""
    kinds = [
        "{type: threshold, above: 90, hysteresis: 5}",
        "{type: threshold, below: 5}",
        "{type: threshold, outside: [0, 100]}",
        "{type: deviation, setpoint: {field: setpoint}, max: 30, hysteresis: 5}",
        "{type: deviation, setpoint: 50, max: 45}",
        "{type: window, aggregate: mean, window: 5m, above: 80}",
        "{type: window, aggregate: max, window: 1m, above: 99}",
        "{type: rate, per: 1m, above: 500}",
        "{type: nodata, after: 10m}",
        "{type: threshold, above: 95, clear: {below: 60}}",
    ]
    lines = ["rules:"]
    for i in range(count):
        m, k = i % MEASUREMENTS, (i // MEASUREMENTS) % len(kinds)
        tags = '{device: {glob: "d*"}}' if i % 3 else '{device: {regex: "d[0-9]+"}, site: {glob: "s*"}}'
        lines += [
            f"  - name: rule_{i:03d}",
            f"    select: {{measurement: m{m}, tags: {tags}, field: {FIELDS[i % len(FIELDS)]}}}",
            f"    condition: {kinds[k]}",
            f"    for: {'30s' if i % 2 else '0s'}" if kinds[k].find("nodata") < 0 else "",
        ]
    return "\n".join(line for line in lines if line) + "\n"


def telemetry(count: int, start_ns: int, rate_per_s: float) -> list[Point]:
    """Random-walk readings of every series in turn, with occasional excursions that fire and resolve."""
    rng = random.Random(42)
    state = {(m, d): 50.0 for m in range(MEASUREMENTS) for d in range(DEVICES)}
    points = []
    step = int(NS / rate_per_s)
    series = list(state)
    for i in range(count):
        m, d = series[i % len(series)]
        value = state[(m, d)] + rng.uniform(-2, 2)
        if rng.random() < 0.002:
            value = rng.choice([2.0, 97.0])  # an excursion
        value = min(max(value, -5.0), 105.0)
        state[(m, d)] = value if 10 < value < 90 else 50.0
        fields: dict[str, Any] = {f: value + j for j, f in enumerate(FIELDS)}
        fields["setpoint"] = 50.0
        points.append(Point(f"m{m}", {"device": f"d{d}", "site": f"s{d % 4}"}, fields, start_ns + i * step))
    return points


def bench_evaluation(points_count: int) -> dict[str, Any]:
    ruleset = parse_rules(rules_yaml())
    start = 1_700_000_000 * NS
    points = telemetry(points_count, start, rate_per_s=5000)
    texts = [format_point(p).encode() for p in points]

    def run(feed: Any) -> tuple[float, float, int, AlertEngine]:
        engine = AlertEngine(ruleset)
        changes = 0
        next_tick = start + NS
        began = time.process_time()  # CPU seconds: the machine is shared, wall time would measure the neighbours
        began_wall = time.perf_counter()
        for point in feed(engine):
            t = point.time_ns
            if t >= next_tick:
                changes += len(engine.tick(t))
                next_tick = t + NS
            changes += len(engine.observe(point, t))
        return time.process_time() - began, time.perf_counter() - began_wall, changes, engine

    def parsed(engine: AlertEngine) -> Iterator[Point]:
        return iter(points)

    def from_text(engine: AlertEngine) -> Iterator[Point]:
        for text in texts:
            yield from parse_record(text)[0]

    run(parsed)  # warm up (instance creation, caches)
    elapsed, wall, changes, engine = run(parsed)
    elapsed_text, _, _, _ = run(from_text)
    return {
        "rules": len(engine.rules),
        "series": MEASUREMENTS * DEVICES,
        "instances": len(engine.instances),
        "points": points_count,
        "state_changes": changes,
        "points_per_s": round(points_count / elapsed),
        "points_per_s_wall": round(points_count / wall),
        "points_per_s_with_parse": round(points_count / elapsed_text),
    }


class _Receiver:
    """A local webhook receiver that stamps the arrival time of every alert it is told about."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                for alert in json.loads(body)["alerts"]:
                    if alert["state"] == "firing":
                        receiver.arrivals.setdefault(alert["labels"]["device"], now)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def bench_latency(alerts: int, background_rate: float) -> dict[str, Any]:
    receiver = _Receiver()
    unique = f"{os.getpid()}-{int(time.time())}"
    with (
        shared_or_own_servers("bench-alerting-") as endpoints,
        tempfile.TemporaryDirectory(prefix="bench-alerting-") as tmp,
    ):
        rules = Path(tmp) / "alerts.yaml"
        rules.write_text(
            f"""\
notifiers:
  hook: {{type: webhook, url: "{receiver.url}"}}
defaults: {{notify: [hook], group_by: [device], group_wait: 0s}}
rules:
  - name: too_hot
    select: {{measurement: bench, tags: {{device: {{glob: "alert-*"}}}}, field: value}}
    condition: {{type: threshold, above: 100}}
  - name: background
    select: {{measurement: bench, tags: {{device: {{glob: "bg-*"}}}}, field: value}}
    condition: {{type: threshold, above: 1000}}
"""
        )
        kafka = KafkaSettings(
            bootstrap_servers=endpoints.kafka.bootstrap_servers,
            linger_ms=5,
            topics=TopicSettings(
                telemetry=f"bench-telemetry-{unique}",
                alerts=f"bench-alerts-{unique}",
                alerts_state=f"bench-alerts.state-{unique}",
            ),
        )
        settings = AlertingSettings(
            kafka=kafka,
            alerting=AlertingOptions(
                rules=rules,
                group_id=f"bench-alerting-{unique}",
                influx_annotations=False,
                poll_timeout_ms=20,
                http=HttpSettings(port=0),
            ),
        )
        create_topics(kafka, TopicLayout())
        configure_logging(LogSettings(level="WARNING", format="console"), "bench")
        service = AlertingService(settings, parse_rules(rules.read_text()))
        shutdown = Shutdown()
        thread = threading.Thread(target=service.run, args=(shutdown,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not service.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        producer = KafkaProducer(kafka)
        stop_background = threading.Event()

        def background() -> None:
            i = 0
            while not stop_background.is_set():
                began = time.monotonic()
                batch = max(1, int(background_rate / 20))
                for _ in range(batch):
                    device = f"bg-{i % 1000}"
                    point = Point("bench", {"device": device}, {"value": 20.0 + i % 7}, time.time_ns())
                    producer.produce(kafka.topics.telemetry, format_point(point), key=device)
                    i += 1
                stop_background.wait(max(0.0, 0.05 - (time.monotonic() - began)))

        bg = threading.Thread(target=background, daemon=True)
        bg.start()
        # Warm-up: the first fetch after a partition assignment takes a few hundred ms (offset lookups);
        # that is start-up, not the steady state this figure is about.
        deadline = time.monotonic() + 30
        while len(service.engine.instances) < 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        sent: dict[str, float] = {}
        for i in range(alerts):
            device = f"alert-{i}"
            sent[device] = time.time()
            point = Point("bench", {"device": device}, {"value": 150.0}, time.time_ns())
            producer.produce(kafka.topics.telemetry, format_point(point), key=device)
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while len(receiver.arrivals) < alerts and time.monotonic() < deadline:
            time.sleep(0.1)
        stop_background.set()
        bg.join(5)
        producer.close(10)
        shutdown.set()
        thread.join(30)
        receiver.server.shutdown()
    in_order = [(receiver.arrivals[d] - sent[d]) * 1000 for d in sent if d in receiver.arrivals]
    if os.environ.get("BENCH_ALERTING_DEBUG"):
        _out("latencies in send order (ms): " + " ".join(f"{x:.0f}" for x in in_order))
    latencies = sorted(in_order)
    if not latencies:
        raise SystemExit("no notification arrived: is Kafka reachable?")

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {
        "alerts": alerts,
        "notified": len(latencies),
        "background_points_per_s": background_rate,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.alerting", description=__doc__)
    parser.add_argument("--points", type=int, default=200_000, help="points through the engine (default 200000)")
    parser.add_argument("--alerts", type=int, default=200, help="alerts whose notification latency is measured")
    parser.add_argument("--background-rate", type=float, default=2000, help="normal points/s during latency run")
    parser.add_argument("--skip-latency", action="store_true", help="evaluation only (no servers needed)")
    args = parser.parse_args(argv)

    evaluation = bench_evaluation(args.points)
    _out(
        f"evaluation: {evaluation['rules']} rules x {evaluation['series']} series "
        f"({evaluation['instances']} instances): {evaluation['points_per_s']:,} points/s "
        f"({evaluation['points_per_s_with_parse']:,} points/s with line protocol parsing), "
        f"{evaluation['state_changes']} state changes"
    )
    figures: dict[str, Any] = dict(evaluation)
    figures["car_points_per_s"] = CAR_POINTS_PER_S
    figures["ratio_to_car"] = round(evaluation["points_per_s"] / CAR_POINTS_PER_S, 2)
    _out(f"the car at full bus load sends {CAR_POINTS_PER_S:,} points/s: ratio_to_car {figures['ratio_to_car']}")
    if not args.skip_latency:
        latency = bench_latency(args.alerts, args.background_rate)
        _out(
            f"latency point → webhook received ({latency['notified']}/{latency['alerts']} alerts, "
            f"{latency['background_points_per_s']:g} background points/s): p50 {latency['p50_ms']} ms, "
            f"p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms"
        )
        figures.update(latency)
    _out(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
