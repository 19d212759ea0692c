"""Provisioning on a real InfluxDB: idempotent, scoped tokens, and a downsampling task that computes the
expected mean/min/max/count per window (run both as a query and as a task run triggered through the API)."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telestack.cli import main
from telestack.core.settings import InfluxSettings
from telestack.influx_writer.errors import InfluxError
from telestack.influx_writer.influx_http import InfluxHttp
from telestack.influx_writer.provisioning import Provisioner, downsample_flux
from telestack.influx_writer.settings import StorageOptions
from telestack.native import InfluxEndpoint
from tests.influx_writer.conftest import flux_rows
from tests.polling import wait_until

# Three hours ago on an hour boundary (s): recent enough for the raw bucket's retention.
T0 = int(time.time()) // 3600 * 3600 - 3 * 3600


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def layout(influx: InfluxEndpoint, unique: str) -> Iterator[tuple[InfluxSettings, StorageOptions, InfluxHttp]]:
    """Raw and downsampled bucket names, task and token names of this test; all removed afterwards."""
    settings = InfluxSettings(url=influx.url, org=influx.org, bucket=f"raw-{unique}", token=influx.token)  # type: ignore[arg-type]
    storage = StorageOptions(
        downsampled_bucket=f"ds-{unique}",
        task_name=f"downsample-{unique}",
        writer_token_description=f"writer {unique}",
        reader_token_description=f"reader {unique}",
    )
    operator = InfluxHttp(settings, gzip_level=0)
    yield settings, storage, operator
    org_id = operator.api("GET", "/api/v2/orgs", params={"org": influx.org})["orgs"][0]["id"]
    for task in operator.api("GET", "/api/v2/tasks", params={"orgID": org_id, "name": storage.task_name})["tasks"]:
        operator.api("DELETE", f"/api/v2/tasks/{task['id']}")
    for auth in operator.api("GET", "/api/v2/authorizations", params={"orgID": org_id})["authorizations"]:
        if unique in auth.get("description", ""):
            operator.api("DELETE", f"/api/v2/authorizations/{auth['id']}")
    for name in (settings.bucket, storage.downsampled_bucket):
        listing = operator.api("GET", "/api/v2/buckets", params={"orgID": org_id, "name": name}, missing_ok=True)
        for bucket in (listing or {}).get("buckets", []):
            operator.api("DELETE", f"/api/v2/buckets/{bucket['id']}")
    operator.close()


def test_provisioning_is_idempotent_and_tokens_are_scoped(
    layout: tuple[InfluxSettings, StorageOptions, InfluxHttp],
) -> None:
    settings, storage, operator = layout
    first = Provisioner(operator, settings, storage).run()
    assert len(first.changes) == 5  # 2 buckets, 1 task, 2 tokens
    second = Provisioner(operator, settings, storage).run()
    assert second.changes == []
    assert (second.writer_token, second.reader_token, second.task_id) == (
        first.writer_token,
        first.reader_token,
        first.task_id,
    )
    raw = operator.api("GET", f"/api/v2/buckets/{first.buckets[settings.bucket]}")
    assert raw["retentionRules"][0]["everySeconds"] == 30 * 86_400
    downsampled = operator.api("GET", f"/api/v2/buckets/{first.buckets[storage.downsampled_bucket]}")
    assert all(rule["everySeconds"] == 0 for rule in downsampled["retentionRules"])  # 0: forever

    shorter = storage.model_copy(update={"raw_retention": "7d"})
    third = Provisioner(operator, settings, shorter).run()
    assert third.changes == [f"changed retention of bucket {settings.bucket} to 7d"]

    writer = InfluxHttp(settings, token=first.writer_token, gzip_level=0)
    reader = InfluxHttp(settings, token=first.reader_token, gzip_level=0)
    line = f"m v=1 {time.time_ns()}".encode()
    writer.write(line)  # the raw bucket: allowed
    with pytest.raises(InfluxError):
        writer.write(line, bucket=storage.downsampled_bucket)
    with pytest.raises(InfluxError), writer.query_csv(f'from(bucket: "{settings.bucket}") |> range(start: 0)') as rows:
        list(rows)
    with reader.query_csv(f'from(bucket: "{settings.bucket}") |> range(start: 0)') as rows:
        assert any("m" in row for row in rows)
    with pytest.raises(InfluxError):
        reader.write(line)
    writer.close()
    reader.close()


def test_init_command_writes_tokens_file(
    layout: tuple[InfluxSettings, StorageOptions, InfluxHttp],
    influx: InfluxEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, storage, _ = layout
    monkeypatch.setenv("TELESTACK_INFLUX__TOKEN", influx.token)
    tokens = tmp_path / "tokens.env"
    argv = [
        "influx-init",
        f"--influx.url={settings.url}",
        f"--influx.org={settings.org}",
        f"--influx.bucket={settings.bucket}",
        f"--influx-writer.storage.downsampled-bucket={storage.downsampled_bucket}",
        f"--influx-writer.storage.task-name={storage.task_name}",
        f"--influx-writer.storage.writer-token-description={storage.writer_token_description}",
        f"--influx-writer.storage.reader-token-description={storage.reader_token_description}",
        f"--tokens-file={tokens}",
    ]
    assert main(argv) == 0
    assert "created task" in capsys.readouterr().out
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    lines = dict(line.split("=", 1) for line in tokens.read_text().splitlines() if not line.startswith("#"))
    assert set(lines) == {"INFLUX_WRITER_TOKEN", "INFLUX_READ_TOKEN"}
    assert main(argv) == 0
    assert "nothing to change" in capsys.readouterr().out


def _expected(values: list[float]) -> dict[str, float]:
    return {"_mean": sum(values) / len(values), "_min": min(values), "_max": max(values), "_count": len(values)}


def _raw_points(start_s: int) -> tuple[bytes, dict[tuple[str, str, int], float]]:
    """3 minutes of points every 10 s (a float and an int field, plus a string that is not aggregated)."""
    lines: list[str] = []
    per_window: dict[tuple[str, int], list[float]] = {}
    for i in range(18):
        t = start_s + i * 10
        temp, rpm = 18.0 + (i % 7) * 0.25, 1000 + i * 13
        lines.append(f'env,dev=f1 temp={temp},rpm={rpm}i,state="ok" {t * 10**9}')
        window = t - t % 60
        per_window.setdefault(("temp", window), []).append(temp)
        per_window.setdefault(("rpm", window), []).append(rpm)
    expected = {
        (field + suffix, "f1", window): value
        for (field, window), values in per_window.items()
        for suffix, value in _expected(values).items()
    }
    return "\n".join(lines).encode(), expected


def _downsampled(settings: InfluxSettings, bucket: str, start_s: int, stop_s: int) -> dict[tuple[str, str, int], float]:
    rows = flux_rows(settings, f'from(bucket: "{bucket}") |> range(start: {start_s}, stop: {stop_s})')
    out: dict[tuple[str, str, int], float] = {}
    for row in rows:
        assert row["_measurement"] == "env"
        seconds = int(datetime.fromisoformat(row["_time"].replace("Z", "+00:00")).timestamp())
        out[(row["_field"], row["dev"], seconds)] = float(row["_value"])
    return out


def test_downsampling_task_computes_mean_min_max_count_per_window(
    layout: tuple[InfluxSettings, StorageOptions, InfluxHttp],
) -> None:
    settings, storage, operator = layout
    result = Provisioner(operator, settings, storage).run()
    flux = downsample_flux(
        raw_bucket=settings.bucket, downsampled_bucket=storage.downsampled_bucket, org=settings.org, storage=storage
    )

    # 1. The task's script run as a query, with now() at the end of the 3 minutes.
    body, expected = _raw_points(T0)
    operator.write(body, bucket=settings.bucket)
    with operator.query_csv(flux, now=_rfc3339(T0 + 180)) as rows:
        list(rows)
    got = _downsampled(settings, storage.downsampled_bucket, T0, T0 + 180)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert not any(field.startswith("state") for field, _, _ in got)  # strings are not aggregated

    # 2. A run of the real task, triggered through the API for a later slot.
    later = T0 + 3600
    body, expected = _raw_points(later)
    operator.write(body, bucket=settings.bucket)
    run = operator.api(
        "POST", f"/api/v2/tasks/{result.task_id}/runs", json_body={"scheduledFor": _rfc3339(later + 180)}
    )

    def finished() -> str | None:
        # Between leaving the queue and entering the run log, InfluxDB answers 404 for the run: look in the log.
        try:
            status = operator.api("GET", f"/api/v2/tasks/{result.task_id}/runs/{run['id']}").get("status")
        except InfluxError as exc:
            if exc.status != 404:
                raise
            logged = operator.api("GET", f"/api/v2/tasks/{result.task_id}/runs").get("runs", [])
            status = next((r.get("status") for r in logged if r.get("id") == run["id"]), None)
        return status if status in ("success", "failed", "canceled") else None

    assert wait_until(finished, 30, interval_s=0.5, what="task run finished") == "success"
    got = _downsampled(settings, storage.downsampled_bucket, later, later + 180)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def _run_task(operator: InfluxHttp, task_id: str, scheduled_for_s: int) -> str:
    """Trigger a run of the task for `scheduled_for_s` (its now()) and wait for its final status."""
    run = operator.api("POST", f"/api/v2/tasks/{task_id}/runs", json_body={"scheduledFor": _rfc3339(scheduled_for_s)})

    def finished() -> str | None:
        try:
            status = operator.api("GET", f"/api/v2/tasks/{task_id}/runs/{run['id']}").get("status")
        except InfluxError as exc:
            if exc.status != 404:
                raise
            logged = operator.api("GET", f"/api/v2/tasks/{task_id}/runs").get("runs", [])
            status = next((r.get("status") for r in logged if r.get("id") == run["id"]), None)
        return status if status in ("success", "failed", "canceled") else None

    return str(wait_until(finished, 30, interval_s=0.5, what="task run finished"))


def test_each_run_aggregates_only_the_windows_not_done_yet(
    layout: tuple[InfluxSettings, StorageOptions, InfluxHttp],
) -> None:
    """Issue 13, finding 3: every run re-aggregated 5 minutes of raw data, so runs grew with the data and piled
    up. Now a run starts after the newest window already downsampled; a window is aggregated once."""
    settings, storage, operator = layout
    result = Provisioner(operator, settings, storage).run()
    t = T0 + 2 * 3600
    body, expected = _raw_points(t)  # windows t, t+60, t+120
    operator.write(body, bucket=settings.bucket)
    assert _run_task(operator, result.task_id, t + 180) == "success"
    assert _downsampled(settings, storage.downsampled_bucket, t, t + 180) == pytest.approx(expected)

    # A point 3 minutes late in the first window, and the next window's data.
    operator.write(f"env,dev=f1 temp=99.0,rpm=9i {(t + 5) * 10**9}".encode(), bucket=settings.bucket)
    operator.write(f"env,dev=f1 temp=20.0,rpm=2000i {(t + 190) * 10**9}".encode(), bucket=settings.bucket)
    assert _run_task(operator, result.task_id, t + 240) == "success"
    got = _downsampled(settings, storage.downsampled_bucket, t, t + 240)
    assert got[("temp_max", "f1", t)] == expected[("temp_max", "f1", t)]  # not aggregated again: late data policy
    assert got[("temp_max", "f1", t + 180)] == 20.0 and got[("rpm_count", "f1", t + 180)] == 1  # the new window
    assert "concurrency: 1" in downsample_flux(
        raw_bucket=settings.bucket, downsampled_bucket=storage.downsampled_bucket, org=settings.org, storage=storage
    )
