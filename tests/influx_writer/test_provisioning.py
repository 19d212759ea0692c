"""Provisioning on a real InfluxDB: idempotent, scoped tokens, and the downsampling task of earlier versions
removed (``telestack downsample`` replaces it; its tests are in test_downsampling.py)."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telestack.cli import main
from telestack.core.influx_http import InfluxHttp
from telestack.core.settings import InfluxSettings
from telestack.influx_writer.errors import InfluxError
from telestack.influx_writer.provisioning import Provisioner
from telestack.influx_writer.settings import StorageOptions
from telestack.native import InfluxEndpoint

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
        downsampler_token_description=f"downsampler {unique}",
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
    assert len(first.changes) == 5  # 2 buckets, 3 tokens
    second = Provisioner(operator, settings, storage).run()
    assert second.changes == []
    assert (second.writer_token, second.reader_token, second.downsampler_token) == (
        first.writer_token,
        first.reader_token,
        first.downsampler_token,
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
        f"--influx-writer.storage.downsampler-token-description={storage.downsampler_token_description}",
        f"--tokens-file={tokens}",
    ]
    assert main(argv) == 0
    assert "created token" in capsys.readouterr().out
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    lines = dict(line.split("=", 1) for line in tokens.read_text().splitlines() if not line.startswith("#"))
    assert set(lines) == {"INFLUX_WRITER_TOKEN", "INFLUX_READ_TOKEN", "INFLUX_DOWNSAMPLER_TOKEN"}
    assert main(argv) == 0
    assert "nothing to change" in capsys.readouterr().out


LEGACY_TASK = """option task = {{name: "{name}", every: 1m, offset: 30s, concurrency: 1}}

from(bucket: "{raw}") |> range(start: -5m) |> to(bucket: "{downsampled}")
"""


def test_init_removes_the_downsampling_task_earlier_versions_created(
    layout: tuple[InfluxSettings, StorageOptions, InfluxHttp],
) -> None:
    """Issue 13, finding 3: InfluxDB OSS let the task's runs overlap (16-19 at once). ``telestack downsample``
    replaces it, so an upgraded stack must not keep running the task too."""
    settings, storage, operator = layout
    Provisioner(operator, settings, storage).run()  # the buckets
    org_id = operator.api("GET", "/api/v2/orgs", params={"org": settings.org})["orgs"][0]["id"]
    flux = LEGACY_TASK.format(name=storage.task_name, raw=settings.bucket, downsampled=storage.downsampled_bucket)
    operator.api("POST", "/api/v2/tasks", json_body={"orgID": org_id, "flux": flux, "status": "active"})

    def tasks() -> list[str]:
        found = operator.api("GET", "/api/v2/tasks", params={"orgID": org_id, "name": storage.task_name})["tasks"]
        return [t["name"] for t in found if t["name"] == storage.task_name]

    assert tasks() == [storage.task_name]
    result = Provisioner(operator, settings, storage).run()
    assert result.changes == [f"removed the InfluxDB task {storage.task_name} (telestack downsample replaces it)"]
    assert tasks() == []
    assert Provisioner(operator, settings, storage).run().changes == []


def test_downsampler_token_reads_raw_and_writes_downsampled_only(
    layout: tuple[InfluxSettings, StorageOptions, InfluxHttp],
) -> None:
    settings, storage, operator = layout
    result = Provisioner(operator, settings, storage).run()
    token = InfluxHttp(settings, token=result.downsampler_token, gzip_level=0)
    line = f"m v=1 {time.time_ns()}".encode()
    try:
        token.write(line, bucket=storage.downsampled_bucket)
        with pytest.raises(InfluxError):
            token.write(line)  # the raw bucket is the writer's
        operator.write(line)
        with token.query_csv(f'from(bucket: "{settings.bucket}") |> range(start: 0)') as rows:
            assert any("m" in row for row in rows)
    finally:
        token.close()
