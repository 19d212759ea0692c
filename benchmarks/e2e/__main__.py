"""``make bench-e2e``: the whole stack under load, end to end, on this machine.

Starts Kafka, Mosquitto and InfluxDB (a `NativeStack` in a temp dir, or the servers of
``TELESTACK_TEST_ENDPOINTS`` when set), then ``telestack can-gateway``, ``mqtt-bridge`` and
``influx-writer`` as processes, and drives them: CAN frames on three buses (udp_multicast, each frame
carrying its sequence number) and N MQTT devices at QoS 1 (each message its device's sequence number and
time). It reports per stage and end to end: throughput, source-timestamp → queryable-in-InfluxDB latency
p50/p95/p99, CPU and RSS per process, loss and duplicates (every sequence number counted in InfluxDB).

Output: readable figures, ``benchmarks/results/e2e-<time>.{json,md,png}``, and a last line holding one JSON
object (``frames_per_s``, ``p99_ms``, ``lost``, ``duplicated``, ..., ``car_target_met`` and, when not, every
reason in ``car_target_not_met_because``: see `report.car_verdict`).

``--find-max`` raises the CAN rate step by step (fresh services, topics and bucket per step) until p99
passes ``--max-p99-ms`` or a frame is lost, and reports the highest rate that held.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.e2e.ceiling import measure_ceiling
from benchmarks.e2e.profile import Profiler
from benchmarks.e2e.report import analyse, car_verdict, write_markdown, write_plot
from benchmarks.e2e.stack import BUSES, E2EStack, LoadSpec
from telestack.native import Endpoints, NativeStack

RESULTS = Path(__file__).resolve().parents[1] / "results"
POLL_S = 0.25
PROGRESS_S = 15.0


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _progress(stack: E2EStack, every_s: float) -> Iterator[None]:
    """A line every `every_s` seconds while the body runs: a user sees the run move, and where it lags."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every_s):
            _say("  " + stack.progress())

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[Endpoints, NativeStack | None]]:
    shared = os.environ.get("TELESTACK_TEST_ENDPOINTS")
    if shared:
        yield Endpoints.load(Path(shared)), None
        return
    native = NativeStack(tmp / "servers")
    endpoints = native.start()
    try:
        yield endpoints, native
    finally:
        native.stop()


def run_once(
    run_dir: Path,
    endpoints: Endpoints,
    native: NativeStack | None,
    spec: LoadSpec,
    name: str,
    profile_s: float = 0,
    warmup_s: float = 3.0,
) -> tuple[dict[str, Any], E2EStack, Any, Any, float]:
    stack = E2EStack(run_dir, endpoints=endpoints, native=native, name=name)
    try:
        stack.prepare()
        stack.start_services()
        stack.start_watching(poll_s=POLL_S)
        started = time.time()
        can, mqtt = stack.start_load(spec, run_dir / "load")
        stack.add_load_pids(**{k: p.process.pid for k, p in (("can-load", can), ("mqtt-load", mqtt)) if p is not None})
        profiler = None
        if profile_s > 0:  # in the steady state: after the first third of the load, at most to its last 5 s
            after = spec.duration_s / 3
            pids = {n: s.pid for n, s in stack.services.items() if s.pid is not None}
            profiler = Profiler(pids, run_dir / "profile", after, min(profile_s, spec.duration_s - after - 5))
            profiler.start()
        with _progress(stack, every_s=PROGRESS_S):
            load = stack.collect_load(can, mqtt, run_dir / "load", timeout_s=spec.duration_s + 180)
            load_ended = time.time()
            _say(f"load ended after {load_ended - started:.0f} s; waiting for the pipeline to drain ...")
            udp_drops = stack.udp_drops()
            try:
                # as long as it takes while the backlog shrinks; a stalled pipeline is reported as loss below
                drained: float | None = stack.wait_drained(load.expected(), timeout_s=60, stall_s=120)
            except TimeoutError as exc:
                _say(f"NOT DRAINED: {exc}; counting what arrived")
                drained = None
        time.sleep(2 * POLL_S)
        observations = stack.stop_watching()
        counts = stack.count()
        figures = analyse(
            spec,
            load,
            observations,
            counts,
            started=started,
            load_ended=load_ended,
            drained_s=drained,
            udp_drops=udp_drops,
            warmup_s=warmup_s,
        )
        figures["service_warnings"] = stack.service_events()  # what each service went through (timeouts, ...)
        if profiler is not None:
            figures["profile"] = profiler.stop()
        return figures, stack, load, observations, started
    finally:
        stack.close()


def describe(figures: dict[str, Any]) -> str:
    can, mqtt = figures["can"], figures["mqtt"]
    return (
        f"CAN {can['buses']}x{can['rate_per_bus']:g}/s: {figures['frames_per_s']} frames/s queryable, "
        f"p50/p95/p99 {figures['p50_ms']}/{figures['p95_ms']}/{figures['p99_ms']} ms, lost {can['lost']}; "
        f"MQTT {mqtt['devices']}x{mqtt['rate_per_device']:g}/s: p99 {mqtt['latency_ms']['p99']} ms, "
        f"lost {mqtt['lost']}; duplicated {figures['duplicated']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--can-rate", type=float, default=9000, help="CAN frames/s per bus, 3 buses (default 9000: 1 Mbit/s saturated)"
    )
    parser.add_argument("--devices", type=int, default=50, help="MQTT devices (default 50)")
    parser.add_argument("--device-rate", type=float, default=10, help="messages/s per device (default 10)")
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=30,
        help="seconds at the start of the load left out of the percentiles and rates (default 30; loss counts "
        "the whole run, and the whole run's percentiles are reported too)",
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="S",
        help="py-spy each service for S seconds in the steady state; where its time goes goes into the report",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the direct-to-InfluxDB ceiling measurement")
    parser.add_argument("--find-max", action="store_true", help="raise the CAN rate until latency or loss breaks")
    parser.add_argument("--start-rate", type=float, default=1500, help="--find-max: first CAN rate per bus")
    parser.add_argument("--step", type=float, default=1.25, help="--find-max: rate factor between steps")
    parser.add_argument("--max-rate", type=float, default=8000, help="--find-max: stop at this rate per bus")
    parser.add_argument("--max-p99-ms", type=float, default=1000, help="--find-max: latency bound (default 1000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON, Markdown and PNG go")
    args = parser.parse_args(argv)
    if args.profile and Profiler.available() is None:
        parser.error("--profile needs py-spy: pip install -e '.[dev]' (or pip install py-spy)")
    if not 0 <= args.warmup <= args.duration - 2:
        parser.error(f"--warmup {args.warmup:g} leaves no steady state in --duration {args.duration:g}: shorten it")

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    context = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "poll_s": POLL_S,
    }
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name, servers(Path(tmp_name)) as (endpoints, native):
        tmp = Path(tmp_name)
        _say(f"servers: {endpoints.versions()}")
        if not args.find_max:
            spec = LoadSpec(args.can_rate, args.devices, args.device_rate, args.duration)
            figures, _, load, observations, started = run_once(
                tmp / "run", endpoints, native, spec, f"e2e-{stamp}", profile_s=args.profile, warmup_s=args.warmup
            )
            for name, found in figures.get("profile", {}).items():  # the raw stacks outlive the temp directory
                if "file" in found:
                    kept = args.out / f"e2e-{stamp}-profile-{name}.txt"
                    kept.write_bytes(Path(found["file"]).read_bytes())
                    found["file"] = str(kept)
            write_plot(args.out / f"e2e-{stamp}.png", load, observations, started, describe(figures)[:110])
            result: dict[str, Any] = figures
        else:
            steps: list[dict[str, Any]] = []
            best: dict[str, Any] | None = None
            rate = args.start_rate
            while rate <= args.max_rate:
                spec = LoadSpec(rate, args.devices, args.device_rate, args.duration)
                _say(f"find-max: {len(BUSES)} buses x {rate:g} frames/s ...")
                step_dir, step_name = tmp / f"step-{len(steps)}", f"e2e-{stamp}-{len(steps)}"
                figures, *_ = run_once(step_dir, endpoints, native, spec, step_name, warmup_s=args.warmup)
                steps.append(figures)
                _say("  " + describe(figures))
                held = figures["lost"] == 0 and (figures["p99_ms"] or 1e9) <= args.max_p99_ms
                if not held:
                    break
                best = figures
                rate = round(rate * args.step)
            result = {
                **(best or steps[-1]),
                "find_max": {
                    "max_sustainable_frames_per_s": best["frames_per_s"] if best else 0,
                    "max_sustainable_rate_per_bus": best["can"]["rate_per_bus"] if best else 0,
                    "bound": {"p99_ms": args.max_p99_ms, "lost": 0},
                    "steps": [
                        {k: s[k] for k in ("frames_per_s", "p99_ms", "lost", "duplicated")}
                        | {"rate_per_bus": s["can"]["rate_per_bus"]}
                        for s in steps
                    ],
                },
            }
        if not args.no_ceiling:
            _say("ceiling: the same lines straight into the same InfluxDB, best request shape ...")
            ceiling = measure_ceiling(endpoints.influx, f"e2e-{stamp}-ceiling", list(BUSES), say=_say)
            find_max = result.get("find_max")
            achieved = find_max["max_sustainable_frames_per_s"] if find_max else result["frames_per_s"] or 0
            basis = (
                "highest rate that held"
                if find_max
                else "this run's pace, capped by the load it offered: a lower bound, --find-max measures the most"
                " that holds"
            )
            if not find_max and result["lost"]:
                achieved, basis = 0, "this run lost points: nothing held"
            result["ceiling_frames_per_s"] = ceiling.frames_per_s
            result["ratio_to_ceiling"] = round(achieved / ceiling.frames_per_s, 3)
            result["ceiling"] = {"shape": ceiling.shape.describe(), "basis": basis, "tried": ceiling.tried}
    result["car_target_met"], result["car_target_not_met_because"] = car_verdict(result)
    (args.out / f"e2e-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(args.out / f"e2e-{stamp}.md", result, context)
    _say((args.out / f"e2e-{stamp}.md").read_text())
    _say(f"results: {args.out}/e2e-{stamp}.{{json,md,png}}")
    _say(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
