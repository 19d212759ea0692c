"""``telestack downsample`` on a real InfluxDB (issue 13, finding 3): its queries never overlap, even with a slow
InfluxDB; each pass aggregates only the windows not done yet; late data within the policy is aggregated again;
a restarted downsampler resumes from the watermark it keeps in InfluxDB; and the result equals an aggregation of
the whole range at once.

The downsampler runs on a clock the test sets, over data three hours old, so no test waits for real minutes.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from telestack.cli import main
from telestack.core.backoff import Backoff
from telestack.core.influx_http import InfluxHttp
from telestack.core.runtime import Shutdown
from telestack.core.settings import InfluxSettings
from telestack.influx_writer.downsampling import (
    WATERMARK_MEASUREMENT,
    Downsampler,
    plan_windows,
)
from telestack.influx_writer.provisioning import Provisioner
from telestack.influx_writer.settings import StorageOptions
from telestack.native import InfluxEndpoint
from tests.influx_writer.conftest import SlowProxy, flux_rows

# Three hours ago on an hour boundary (s): recent enough for the raw bucket's retention.
T0 = int(time.time()) // 3600 * 3600 - 3 * 3600
W = 60  # the default window, s
OFFSET = 30
LATE = 5


class Layout:
    """Raw and downsampled buckets of one test, provisioned; a downsampler factory on a clock the test sets."""

    def __init__(self, settings: InfluxSettings, storage: StorageOptions, operator: InfluxHttp, token: str) -> None:
        self.settings = settings
        self.storage = storage
        self.operator = operator
        self.token = token
        self.now = float(T0)
        self.clients: list[InfluxHttp] = []

    def downsampler(self, url: str | None = None, **kwargs: object) -> Downsampler:
        """A downsampler (a fresh process); without a watermark in InfluxDB it starts at T0."""
        settings = self.settings if url is None else self.settings.model_copy(update={"url": url})
        storage = self.storage.model_copy(update={"downsample_lookback": f"{int(self.now) - T0}s"})
        client = InfluxHttp(settings, token=self.token, gzip_level=0)
        self.clients.append(client)
        return Downsampler(
            client,
            raw_bucket=self.settings.bucket,
            storage=storage,
            backoff=Backoff(0.05, 0.2, jitter=0.0),
            clock=lambda: self.now,
            **kwargs,  # type: ignore[arg-type]
        )

    def write(self, lines: list[str]) -> None:
        self.operator.write("\n".join(lines).encode(), bucket=self.settings.bucket)

    def downsampled(self, start_s: int, stop_s: int) -> dict[tuple[str, str, int], float]:
        rows = flux_rows(
            self.settings,
            f'from(bucket: "{self.storage.downsampled_bucket}") |> range(start: {start_s}, stop: {stop_s})'
            f' |> filter(fn: (r) => r._measurement != "{WATERMARK_MEASUREMENT}")',
        )
        return {(row["_field"], row["dev"], _seconds(row["_time"])): float(row["_value"]) for row in rows}


def _refused(downsampler: Downsampler) -> float:
    sample = downsampler.metrics.registry.get_sample_value(
        "telestack_downsample_query_failures_total", {"kind": "refused"}
    )
    return sample or 0.0


def _seconds(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


@pytest.fixture
def layout(influx: InfluxEndpoint, unique: str) -> Iterator[Layout]:
    settings = InfluxSettings(url=influx.url, org=influx.org, bucket=f"raw-{unique}", token=influx.token)  # type: ignore[arg-type]
    storage = StorageOptions(
        downsampled_bucket=f"ds-{unique}",
        task_name=f"downsample-{unique}",
        writer_token_description=f"writer {unique}",
        reader_token_description=f"reader {unique}",
        downsampler_token_description=f"downsampler {unique}",
    )
    operator = InfluxHttp(settings, gzip_level=0)
    result = Provisioner(operator, settings, storage).run()
    here = Layout(settings, storage, operator, result.downsampler_token)
    yield here
    for client in here.clients:
        client.close()
    org_id = operator.api("GET", "/api/v2/orgs", params={"org": influx.org})["orgs"][0]["id"]
    for auth in operator.api("GET", "/api/v2/authorizations", params={"orgID": org_id})["authorizations"]:
        if unique in auth.get("description", ""):
            operator.api("DELETE", f"/api/v2/authorizations/{auth['id']}")
    for bucket_id in result.buckets.values():
        operator.api("DELETE", f"/api/v2/buckets/{bucket_id}", missing_ok=True)
    operator.close()


def _points(start_s: int, minutes: int, devices: int = 2) -> tuple[list[str], dict[tuple[str, str, int], float]]:
    """Points every 10 s for `minutes` (a float, an int and a string field); the expected aggregates."""
    lines: list[str] = []
    per_window: dict[tuple[str, str, int], list[float]] = {}
    for d in range(devices):
        for i in range(minutes * 6):
            t = start_s + i * 10
            temp, rpm = 18.0 + ((i + d) % 7) * 0.25, 1000 + i * 13 + d
            lines.append(f'env,dev=d{d} temp={temp},rpm={rpm}i,state="ok" {t * 10**9}')
            window = t - t % W
            per_window.setdefault(("temp", f"d{d}", window), []).append(temp)
            per_window.setdefault(("rpm", f"d{d}", window), []).append(rpm)
    return lines, _aggregates(per_window)


def _aggregates(per_window: dict[tuple[str, str, int], list[float]]) -> dict[tuple[str, str, int], float]:
    out: dict[tuple[str, str, int], float] = {}
    for (field, dev, window), values in per_window.items():
        out[(f"{field}_mean", dev, window)] = sum(values) / len(values)
        out[(f"{field}_min", dev, window)] = min(values)
        out[(f"{field}_max", dev, window)] = max(values)
        out[(f"{field}_count", dev, window)] = len(values)
    return out


def _whole_range(layout: Layout, start_s: int, stop_s: int) -> dict[tuple[str, str, int], float]:
    """The aggregation of the whole range in one query (what the downsampled bucket must equal)."""
    out: dict[tuple[str, str, int], float] = {}
    for suffix, fn in (("_mean", "mean"), ("_min", "min"), ("_max", "max"), ("_count", "count")):
        rows = flux_rows(
            layout.settings,
            f'import "types"\nfrom(bucket: "{layout.settings.bucket}") |> range(start: {start_s}, stop: {stop_s})'
            " |> filter(fn: (r) => types.isNumeric(v: r._value))"
            f' |> aggregateWindow(every: {W}s, fn: {fn}, createEmpty: false, timeSrc: "_start")',
        )
        for row in rows:
            out[(row["_field"] + suffix, row["dev"], _seconds(row["_time"]))] = float(row["_value"])
    return out


def test_plan_windows_new_then_second_pass() -> None:
    # Nothing closed yet: a window is due `offset` after its end.
    assert plan_windows(watermark_s=600, now_s=689, window_s=W, offset_s=OFFSET, late_windows=LATE) == ([], [])
    # One new window, and again the one that ended 5 windows before (with its late points).
    assert plan_windows(watermark_s=600, now_s=690, window_s=W, offset_s=OFFSET, late_windows=LATE) == ([300], [600])
    # After a stop: every missed window once (late enough already), the last 5 before the stop again.
    late, new = plan_windows(watermark_s=600, now_s=1290, window_s=W, offset_s=OFFSET, late_windows=LATE)
    assert late == [300, 360, 420, 480, 540] and new == list(range(600, 1260, W))
    assert plan_windows(watermark_s=600, now_s=690, window_s=W, offset_s=OFFSET, late_windows=0) == ([], [600])


def test_passes_aggregate_only_new_windows_and_equal_the_whole_range(layout: Layout) -> None:
    lines, expected = _points(T0, 10)
    layout.write(lines)
    proxy = SlowProxy(int(layout.settings.url.rsplit(":", 1)[1]))
    try:
        layout.now = T0 + 8 * W + OFFSET
        downsampler = layout.downsampler(url=f"http://127.0.0.1:{proxy.port}")
        first = downsampler.run_pass()
        assert first.new == [T0 + i * W for i in range(8)] and first.late == []
        assert downsampler.watermark_s == T0 + 8 * W

        # A minute later: one new window and one second pass, 2 queries and 1 watermark write, nothing else.
        layout.now += W
        before = proxy.requests
        second = downsampler.run_pass()
        assert second.new == [T0 + 8 * W] and second.late == [T0 + 3 * W]
        assert proxy.requests - before == 3
        before = proxy.requests
        assert downsampler.run_pass().new == []  # nothing new: no query at all
        assert proxy.requests == before
    finally:
        proxy.close()
    got = layout.downsampled(T0, T0 + 9 * W)
    whole = _whole_range(layout, T0, T0 + 9 * W)
    assert got.keys() == whole.keys() == {k for k in expected if k[2] < T0 + 9 * W}
    for key, value in whole.items():
        assert got[key] == pytest.approx(value), key
        assert got[key] == pytest.approx(expected[key]), key
    assert not any(field.startswith("state") for field, _, _ in got)  # strings are not aggregated


def test_late_points_within_the_policy_are_aggregated_again(layout: Layout) -> None:
    lines, expected = _points(T0, 3)
    layout.write(lines)
    layout.now = T0 + 3 * W + OFFSET
    downsampler = layout.downsampler()
    downsampler.run_pass()
    assert layout.downsampled(T0, T0 + 3 * W)[("temp_max", "d0", T0)] == expected[("temp_max", "d0", T0)]

    # A point 4 minutes late in the first window (within 5 windows), another in a window after the policy.
    layout.write([f"env,dev=d0 temp=99.0,rpm=9i {(T0 + 5) * 10**9}"])
    for minute in range(3, 3 + LATE):
        layout.write([f"env,dev=d0 temp=20.0,rpm=2000i {(T0 + minute * W) * 10**9}"])
        layout.now += W
        downsampler.run_pass()
    got = layout.downsampled(T0, T0 + 8 * W)
    assert got[("temp_max", "d0", T0)] == 99.0  # the first window's second pass took the late point
    assert got[("rpm_count", "d0", T0)] == expected[("rpm_count", "d0", T0)] + 1
    assert got[("temp_min", "d0", T0)] == expected[("temp_min", "d0", T0)]

    # Later than the policy: raw only, until --redo.
    layout.write([f"env,dev=d0 temp=-5.0,rpm=1i {(T0 + 2 * W + 1) * 10**9}"])
    layout.now += W
    downsampler.run_pass()
    third = ("temp_min", "d0", T0 + 2 * W)
    assert layout.downsampled(T0, T0 + 3 * W)[third] == expected[third]
    assert downsampler.redo(T0 + 2 * W, T0 + 3 * W) == [T0 + 2 * W]
    assert layout.downsampled(T0, T0 + 3 * W)[third] == -5.0
    assert layout.downsampled(T0, T0 + 9 * W) == pytest.approx(_whole_range(layout, T0, T0 + 9 * W))


def test_a_restarted_downsampler_resumes_from_its_watermark(layout: Layout) -> None:
    lines, _ = _points(T0, 12)
    layout.write(lines)
    layout.now = T0 + 6 * W + OFFSET
    assert layout.downsampler().run_pass().new == [T0 + i * W for i in range(6)]

    # A new process (nothing in memory) six minutes later: the six windows since, the five before again.
    layout.now = T0 + 12 * W + OFFSET
    restarted = layout.downsampler()
    result = restarted.run_pass()
    assert restarted.read_watermark() == T0 + 12 * W
    assert result.new == [T0 + i * W for i in range(6, 12)]
    assert result.late == [T0 + i * W for i in range(1, 6)]
    assert layout.downsampled(T0, T0 + 12 * W) == pytest.approx(_whole_range(layout, T0, T0 + 12 * W))


def test_queries_never_overlap_with_a_slow_influxdb(layout: Layout, slow_proxy: SlowProxy) -> None:
    """Windows fall due every 50 ms while each query waits 300 ms in the proxy: the loop still runs one query
    at a time (the InfluxDB task started a run every minute however long the previous ones took)."""
    lines, expected = _points(T0, 20, devices=1)
    layout.write(lines)
    slow_proxy.delay_s = 0.3
    started = time.monotonic()
    windows_per_s = 20.0

    def clock() -> float:
        return T0 + OFFSET + W + (time.monotonic() - started) * windows_per_s * W

    stop = Shutdown()
    downsampler = layout.downsampler(url=f"http://127.0.0.1:{slow_proxy.port}", sleep=_stoppable(stop))
    downsampler.clock = clock
    downsampler.watermark_s = downsampler.first_s = T0  # as if read at T0 (the clock runs fast)
    thread = threading.Thread(target=downsampler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (downsampler.watermark_s or 0) < T0 + 20 * W and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert (downsampler.watermark_s or 0) >= T0 + 20 * W, "the downsampler did not catch up within 60 s"
    assert slow_proxy.requests > 20
    assert slow_proxy.max_in_flight == 1, f"{slow_proxy.max_in_flight} queries at once"
    got = layout.downsampled(T0, T0 + 20 * W)
    assert got == pytest.approx(expected)


def _stoppable(stop: Shutdown) -> Callable[[float], bool]:
    return lambda seconds: stop.wait(min(seconds, 0.05))


def test_downsample_command_once(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command as compose and the demo run it, once: catches up from the lookback to now."""
    now = int(time.time())
    start = now // W * W - 5 * W
    lines, _ = _points(start, 3, devices=1)
    layout.write(lines)
    monkeypatch.setenv("TELESTACK_INFLUX__TOKEN", layout.token)
    argv = [
        "downsample",
        "--once",
        f"--influx.url={layout.settings.url}",
        f"--influx.org={layout.settings.org}",
        f"--influx.bucket={layout.settings.bucket}",
        f"--influx-writer.storage.downsampled-bucket={layout.storage.downsampled_bucket}",
        "--influx-writer.storage.downsample-lookback=10m",
    ]
    assert main(argv) == 0
    assert re.search(r"aggregated (9|10) new windows", capsys.readouterr().out)
    assert layout.downsampled(start, start + 3 * W) == pytest.approx(_whole_range(layout, start, start + 3 * W))


def test_only_numeric_fields_are_aggregated_and_new_fields_are_picked_up(layout: Layout) -> None:
    """Strings and booleans next to numbers (a field numeric in one measurement and a string in another): exactly
    the numeric aggregates, no error. A numeric field first seen in a later window is aggregated from there on."""
    lines = []
    values: dict[tuple[str, str, int], list[float]] = {}
    for i in range(6):
        t = T0 + i * 10
        lines.append(f'env,dev=d0 temp={20 + i}.5,code="E{i}",ok=true {t * 10**9}')
        lines.append(f'log,dev=d0 temp="hot",level={i}i {t * 10**9}')
        values.setdefault(("temp", "d0", T0), []).append(20 + i + 0.5)
        values.setdefault(("level", "d0", T0), []).append(i)
    # The second window: a new numeric field, and a new series of a known one.
    for i in range(3):
        t = T0 + W + i * 10
        lines.append(f"env,dev=d1 temp=1{i}.0,volts={i}u {t * 10**9}")
        values.setdefault(("temp", "d1", T0 + W), []).append(10 + i)
        values.setdefault(("volts", "d1", T0 + W), []).append(i)
    layout.write(lines)
    layout.now = T0 + 2 * W + OFFSET
    downsampler = layout.downsampler()
    assert downsampler.run_pass().new == [T0, T0 + W]
    got = layout.downsampled(T0, T0 + 2 * W)
    assert got == pytest.approx(_aggregates(values))
    rows = flux_rows(
        layout.settings,
        f'from(bucket: "{layout.storage.downsampled_bucket}") |> range(start: {T0}, stop: {T0 + 2 * W})'
        ' |> filter(fn: (r) => r._field == "temp_mean")',
    )
    assert {(row["_measurement"], row["dev"]) for row in rows} == {("env", "d0"), ("env", "d1")}
    assert downsampler.numeric_pairs == {("env", "temp"), ("log", "level"), ("env", "volts")}


def test_a_field_whose_type_changes_between_shards_is_aggregated_where_numeric(layout: Layout) -> None:
    """A field numeric in one window and a string in a later one (a new shard accepts the new type): the pairs
    learnt from the first window cost the second one a single refused query, not a skipped window."""
    boundary = T0 - T0 % 86400  # the raw bucket (30 d) has shard groups of 1 day, aligned on UTC midnight
    layout.write(
        [
            f"env,dev=d0 x=1.5,y=2i {(boundary - 30) * 10**9}",
            f"env,dev=d0 x=2.5,y=4i {(boundary - 20) * 10**9}",
            f'env,dev=d0 x="text",y=6i {(boundary + 10) * 10**9}',
        ]
    )
    layout.now = T0 + W
    downsampler = layout.downsampler()
    assert _refused(downsampler) == 0
    assert downsampler.redo(boundary - W, boundary + W) == [boundary - W, boundary]
    expected = _aggregates(
        {("x", "d0", boundary - W): [1.5, 2.5], ("y", "d0", boundary - W): [2, 4], ("y", "d0", boundary): [6]}
    )
    assert layout.downsampled(boundary - W, boundary + W) == pytest.approx(expected)
    assert downsampler.numeric_pairs == {("env", "y")}
    # The second window's first query aggregated x as a number (InfluxDB refuses it): one retry, after a look.
    assert _refused(downsampler) == 1
