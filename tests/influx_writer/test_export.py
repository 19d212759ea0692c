"""Export of a range to Parquet and CSV reproduces exactly the points written; import writes them back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from telestack.cli import main
from telestack.core.annotated_csv import format_rfc3339_ns
from telestack.core.influx_http import InfluxHttp
from telestack.core.lineproto import FieldValue, Point, UInt, format_point
from telestack.core.settings import InfluxSettings
from telestack.influx_writer.errors import TransferError
from telestack.influx_writer.importer import iter_file_points
from telestack.native import InfluxEndpoint

START = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
HOUR = 3600 * 10**9

PointKey = tuple[str, frozenset[tuple[str, str]], str, str, FieldValue, int]


def _points() -> list[Point]:
    points: list[Point] = []
    for i in range(900):  # 3 h, one every 12 s, odd nanoseconds
        t = START + i * 12 * 10**9 + 123_456_789
        points.append(
            Point(
                "vehicle",
                {"bus": f"can{i % 3}", "car": "ved-01"},
                {"rpm": 3000 + i, "speed": i * 0.5, "odometer": UInt(10**12 + i), "brake": i % 2 == 0},
                t,
            )
        )
        if i % 4 == 0:  # another measurement, other tags, a string field with awkward characters
            fields: dict[str, FieldValue] = {"temp": 18.25 + i / 1000, "state": 'open, "half"\\ok'}
            if i % 8 == 0:
                fields.pop("state")  # rows with a missing field
            points.append(Point("fermenter", {"device": "f1"}, fields, t + 1))
    return points


def _keys(points: Iterator[Point] | list[Point]) -> set[PointKey]:
    return {
        (p.measurement, frozenset(p.tags.items()), name, type(value).__name__, value, p.time_ns or 0)
        for p in points
        for name, value in p.fields.items()
    }


def _in_range(points: list[Point], start: int, stop: int) -> list[Point]:
    return [p for p in points if p.time_ns is not None and start <= p.time_ns < stop]


@pytest.fixture
def new_bucket(influx: InfluxEndpoint, unique: str) -> Iterator[Callable[[], str]]:
    """Factory: a fresh empty bucket; all deleted after the test."""
    settings = InfluxSettings(url=influx.url, org=influx.org, token=influx.token)  # type: ignore[arg-type]
    api = InfluxHttp(settings, gzip_level=0)
    org_id = api.api("GET", "/api/v2/orgs", params={"org": influx.org})["orgs"][0]["id"]
    created: list[dict[str, str]] = []

    def create() -> str:
        name = f"import-{unique}-{len(created)}"
        created.append(api.api("POST", "/api/v2/buckets", json_body={"orgID": org_id, "name": name}))
        return name

    yield create
    for bucket in created:
        api.api("DELETE", f"/api/v2/buckets/{bucket['id']}")
    api.close()


@pytest.fixture
def written(influx_settings: InfluxSettings) -> list[Point]:
    points = _points()
    api = InfluxHttp(influx_settings)
    api.write("\n".join(format_point(p) for p in points).encode())
    api.close()
    return points


def _cli(monkeypatch: pytest.MonkeyPatch, influx: InfluxSettings, *args: str) -> int:
    monkeypatch.setenv("TELESTACK_INFLUX__TOKEN", influx.require_token())
    return main([*args, f"--influx.url={influx.url}", f"--influx.org={influx.org}", "--no-progress"])


def test_parquet_and_csv_exports_reproduce_the_points_of_the_range(
    influx_settings: InfluxSettings, written: list[Point], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A range that cuts through the data (from 30 min in to 2 h 30 min in), read in 1 h chunks.
    start, stop = START + HOUR // 2, START + 5 * HOUR // 2
    expected = _keys(_in_range(written, start, stop))
    common = [f"--start={format_rfc3339_ns(start)}", f"--stop={format_rfc3339_ns(stop)}", "--chunk=1h"]
    common.append(f"--bucket={influx_settings.bucket}")

    parquet = tmp_path / "range.parquet"
    assert _cli(monkeypatch, influx_settings, "export", str(parquet), *common) == 0
    table = pq.read_table(parquet)
    assert table.column_names == [
        "time",
        "measurement",
        "bus",
        "car",
        "device",
        *sorted(["rpm", "speed", "odometer", "brake", "temp", "state"]),
    ]
    assert str(table.schema.field("odometer").type) == "uint64"
    assert str(table.schema.field("time").type) == "timestamp[ns, tz=UTC]"
    assert _keys(iter_file_points(parquet, "parquet")) == expected

    csv_path = tmp_path / "range.csv"
    assert _cli(monkeypatch, influx_settings, "export", str(csv_path), *common) == 0
    csv_points = list(iter_file_points(csv_path, "csv", ["bus", "car", "device"]))
    # CSV cannot tell an unsigned integer from a signed one; everything else round-trips exactly.
    assert _keys(csv_points) == {
        (m, t, f, "int" if kind == "UInt" else kind, int(v) if kind == "UInt" else v, ns)
        for m, t, f, kind, v, ns in expected
    }


def test_filters_select_measurement_and_tags(
    influx_settings: InfluxSettings, written: list[Point], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "can1.parquet"
    args = ["export", str(out), f"--bucket={influx_settings.bucket}", f"--start={format_rfc3339_ns(START)}"]
    args += [f"--stop={format_rfc3339_ns(START + 4 * HOUR)}", "--measurement=vehicle", "--tag=bus=can1", "--field=rpm"]
    assert _cli(monkeypatch, influx_settings, *args) == 0
    expected = {key for key in _keys(written) if key[0] == "vehicle" and ("bus", "can1") in key[1] and key[2] == "rpm"}
    assert _keys(iter_file_points(out, "parquet")) == expected
    assert len(expected) == 300


def test_import_of_an_export_writes_the_same_points(
    influx_settings: InfluxSettings,
    written: list[Point],
    new_bucket: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = [f"--start={format_rfc3339_ns(START)}", f"--stop={format_rfc3339_ns(START + 4 * HOUR)}"]
    source = f"--bucket={influx_settings.bucket}"
    for suffix, extra in ((".parquet", []), (".csv", ["--tags=bus,car,device"])):
        exported, target, again = tmp_path / f"all{suffix}", new_bucket(), tmp_path / f"again-{suffix[1:]}.parquet"
        assert _cli(monkeypatch, influx_settings, "export", str(exported), source, *window) == 0
        assert _cli(monkeypatch, influx_settings, "import", str(exported), f"--bucket={target}", *extra) == 0
        assert _cli(monkeypatch, influx_settings, "export", str(again), f"--bucket={target}", *window) == 0
        reimported = _keys(iter_file_points(again, "parquet"))
        if suffix == ".parquet":
            assert reimported == _keys(written)
        else:  # CSV carries no uint64 type: the odometer comes back as a signed integer
            assert reimported == {
                (m, t, f, "int" if kind == "UInt" else kind, int(v) if kind == "UInt" else v, ns)
                for m, t, f, kind, v, ns in _keys(written)
            }


def test_an_import_file_with_a_bad_time_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("time,measurement,v\n2023-11-14T22:13:20Z,m,1\n14/11/2023 22:13,m,2\n")
    points = iter_file_points(path, "csv")
    assert next(points).time_ns == 1_700_000_000_000_000_000
    with pytest.raises(TransferError, match=r"points\.csv line 3: unexpected time '14/11/2023 22:13'"):
        next(points)
