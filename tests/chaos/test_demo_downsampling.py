"""The demo (every service, the simulators and the downsampler) running for a while: issue 13's last row.

Full size: 30 minutes. The downsampler must keep up (never more than a window or two behind), never run two
queries at once, and leave the downsampled bucket equal to an aggregation of the whole raw range; InfluxDB must
hold no downsampling task; no service may die; the writer's lag drains within the size's bound once the
simulators stop; and every process's RSS peak is reported.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.e2e.processes import parse_metrics, usage_of

from telestack.core.annotated_csv import iter_rows
from telestack.core.influx_http import InfluxHttp
from telestack.core.settings import InfluxSettings, env_name
from telestack.demo.processes import wait_all_stopped
from telestack.demo.stack import DemoStack
from telestack.influx_writer.downsampling import AGGREGATES, WATERMARK_MEASUREMENT, _pairs_predicate
from telestack.influx_writer.settings import StorageOptions, duration_seconds
from tests.chaos.conftest import ChaosSize, record
from tests.influx_writer.conftest import flux_rows
from tests.polling import wait_until

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.integration,
    pytest.mark.timeout(3600),
]

STORAGE = StorageOptions()
WINDOW_S = duration_seconds(STORAGE.downsample_window)


def _seconds(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


def _numeric_pairs(influx: InfluxSettings, flux_source: str, start_s: int, stop_s: int) -> list[tuple[str, str]]:
    """The (measurement, field) pairs holding numbers, from each series' first point (its CSV `#datatype`)."""
    client = InfluxHttp(influx, gzip_level=0)
    pairs: set[tuple[str, str]] = set()
    flux = (
        f"{flux_source} |> range(start: {start_s}, stop: {stop_s})"
        f' |> filter(fn: (r) => r._measurement != "{WATERMARK_MEASUREMENT}") |> first()'
    )
    try:
        with client.query_csv(flux) as reader:
            for table, row in iter_rows(reader):  # the project's annotated-CSV reader: types and error tables
                column = dict(zip(table.columns, row, strict=True))
                if table.datatypes[table.columns.index("_value")] in ("double", "long", "unsignedLong"):
                    pairs.add((column["_measurement"], column["_field"]))
    finally:
        client.close()
    return sorted(pairs)


def _aggregates(influx: InfluxSettings, flux_source: str, start_s: int, stop_s: int) -> dict[tuple[str, ...], float]:
    """(measurement, field+suffix, series tags, window) → value, of the whole range aggregated at once.

    Numeric fields are chosen by name (an equality filter InfluxDB pushes down to storage), not row by row: a
    per-row `types.isNumeric` over the demo's raw data took minutes.
    """
    pairs = _numeric_pairs(influx, flux_source, start_s, stop_s)
    if not pairs:
        return {}
    chosen = _pairs_predicate(pairs)  # grouped by measurement: one `or` per pair nested too deep for Flux
    out: dict[tuple[str, ...], float] = {}
    for suffix, fn in AGGREGATES.items():
        rows = flux_rows(
            influx,
            f"{flux_source} |> range(start: {start_s}, stop: {stop_s}) |> filter(fn: (r) => {chosen})"
            f' |> aggregateWindow(every: {WINDOW_S}s, fn: {fn}, createEmpty: false, timeSrc: "_start")',
        )
        for row in rows:
            out[_key(row, row["_field"] + suffix)] = float(row["_value"])
    return out


def _downsampled(influx: InfluxSettings, start_s: int, stop_s: int) -> dict[tuple[str, ...], float]:
    rows = flux_rows(
        influx,
        f'from(bucket: "{STORAGE.downsampled_bucket}") |> range(start: {start_s}, stop: {stop_s})'
        f' |> filter(fn: (r) => r._measurement != "{WATERMARK_MEASUREMENT}")',
    )
    return {_key(row, row["_field"]): float(row["_value"]) for row in rows}


def _watermark(influx: InfluxSettings) -> int:
    """The end of the last window the downsampler aggregated (epoch s), from its marker; 0 before the first."""
    marker = flux_rows(
        influx,
        f'from(bucket: "{STORAGE.downsampled_bucket}") |> range(start: -1d)'
        f' |> filter(fn: (r) => r._measurement == "{WATERMARK_MEASUREMENT}") |> last()',
    )
    return int(float(marker[0]["_value"])) if marker else 0


def _key(row: dict[str, str], field: str) -> tuple[str, ...]:
    tags = tuple(
        sorted(f"{k}={v}" for k, v in row.items() if not k.startswith("_") and k not in ("", "result", "table") and v)
    )
    return (row["_measurement"], field, *tags, str(_seconds(row["_time"])))


def test_demo_runs_with_the_downsampler(tmp_path: Path, size: ChaosSize) -> None:
    cadence = {
        env_name("influx_writer", "storage", "downsample_every"): size.downsample_every,
        env_name("influx_writer", "storage", "downsample_offset"): size.downsample_offset,
    }
    demo = DemoStack(tmp_path / "demo", standard_ports=False, service_env={"downsampler": cadence})
    info = demo.start()
    influx = InfluxSettings(
        url=info.endpoints.influx.url,
        org=info.endpoints.influx.org,
        bucket=info.endpoints.influx.bucket,
        token=info.endpoints.influx.token,
        # The test's own reads, not the product's path: a loaded machine (ci28, cold, load 30) made the check of the
        # downsampled bucket time out at the default 10 s; the whole-range aggregates take longer still.
        timeout_ms=120_000,
    )
    started = time.time()
    peaks: dict[str, int] = {}
    max_in_flight = 0.0
    behind_windows: list[float] = []
    restarted: list[str] = []
    metrics_url = f"{info.url('downsampler')}/metrics"
    try:
        with httpx.Client(timeout=5) as http:
            while time.time() - started < size.demo_s:
                restarted += [r.name for r in demo.restart_exited()]
                pids = {p.name: p.pid for p in demo.services if p.pid is not None}
                pids.update({s.name: s.process.pid for s in demo.native.servers if s.process is not None})
                for name, pid in pids.items():
                    usage = usage_of(pid)
                    if usage is not None:
                        peaks[name] = max(peaks.get(name, 0), usage.rss_bytes)
                try:
                    values = parse_metrics(http.get(metrics_url).text)
                except httpx.HTTPError:
                    values = {}
                max_in_flight = max(max_in_flight, values.get("telestack_downsample_queries_in_flight", 0.0))
                watermark = values.get("telestack_downsample_watermark_timestamp_seconds")
                if watermark:
                    behind_windows.append((time.time() - watermark) / WINDOW_S)
                time.sleep(2)
        dead = [p.name for p in demo.exited()]
        wait_all_stopped(demo.simulators, timeout_s=10)
        stopped = time.monotonic()
        lag = _wait_lag_zero(demo, size.drained_within_s)
        drained_s = round(time.monotonic() - stopped, 1)
        first = int(started) // WINDOW_S * WINDOW_S  # the simulators started before: this window is whole

        # At least the first window aggregated: on a loaded machine the downsampler can be a window behind when the
        # demo stops (ci32: its watermark still at the first window's start, 0 windows to compare)
        def past_the_first_window() -> int:
            mark = _watermark(influx)
            return mark if mark >= first + WINDOW_S else 0

        watermark_s = wait_until(
            past_the_first_window,
            timeout_s=size.drained_within_s,
            interval_s=2,
            what=f"the downsampler's watermark past the first window ({first + WINDOW_S})",
        )
        # The windows past their second pass (late points in); a short run checks every window aggregated.
        checked_until = watermark_s - STORAGE.downsample_late_windows * WINDOW_S
        if checked_until <= first:
            checked_until = watermark_s
        whole: dict[tuple[str, ...], float] = {}
        got: dict[tuple[str, ...], float] = {}
        if checked_until > first:  # else no window to compare: the assertion on windows checked says so
            whole = _aggregates(influx, f'from(bucket: "{influx.bucket}")', first, checked_until)
            got = _downsampled(influx, first, checked_until)
        missing = sorted(set(whole) - set(got))
        extra = sorted(set(got) - set(whole))
        differing = [k for k in whole if k in got and got[k] != pytest.approx(whole[k], rel=1e-9, abs=1e-9)]
        with httpx.Client(headers={"Authorization": f"Token {influx.token}"}, timeout=10) as client:
            tasks = client.get(f"{influx.url}/api/v2/tasks").json().get("tasks", [])
    finally:
        demo.stop()
    report: dict[str, Any] = {
        "fault": f"demo with the downsampler, {size.demo_s:g} s",
        "sent": len(whole),
        "missing": len(missing),
        "duplicated": len(extra),
        "drained_after_s": drained_s,
        "writer_lag": lag,
        "rss_peak_mb": {name: round(rss / 2**20) for name, rss in sorted(peaks.items())},
        "downsample_windows_checked": len({k[-1] for k in whole}),
        "downsample_values_differing": len(differing),
        "downsample_max_queries_at_once": max_in_flight,
        "downsample_max_windows_behind": round(max(behind_windows), 1) if behind_windows else None,
        "influx_tasks": [t.get("name") for t in tasks],
        "restarted": restarted,
        "compared_windows": [first, checked_until, watermark_s],
        "notes": "points: aggregate values of the downsampled bucket compared with a whole-range aggregation",
    }
    record(report)
    assert not dead and not restarted, (dead, restarted)
    assert lag == 0
    assert not tasks, "InfluxDB still runs a task"
    assert max_in_flight <= 1
    assert behind_windows and max(behind_windows) <= 3, behind_windows[-10:]
    assert report["downsample_windows_checked"] >= max(1, int(size.demo_s // WINDOW_S) - 8), report
    assert not missing and not extra and not differing, (missing[:5], extra[:5], differing[:5])


def _wait_lag_zero(demo: DemoStack, timeout_s: float) -> int:
    from telestack.core.settings import KafkaSettings
    from telestack.kafka_admin.lag import LagProbe

    assert demo.info is not None
    probe = LagProbe(KafkaSettings(bootstrap_servers=demo.info.endpoints.kafka.bootstrap_servers), 10)
    deadline = time.monotonic() + timeout_s
    lag = -1
    while time.monotonic() < deadline:
        try:
            lags = probe.lag(["telestack-influx-writer"])
            lag = sum(sum(topics.values()) for topics in lags.values())
        except Exception:  # Kafka busy: ask again
            continue
        if lag == 0:
            return 0
        time.sleep(1)
    return lag
