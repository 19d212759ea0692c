"""Line protocol against real InfluxDB: tricky names and values are written and read back identical."""

from __future__ import annotations

import time

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from telestack.core.lineproto import Point, UInt, format_lines
from telestack.native import InfluxEndpoint

TRICKY = [
    Point("plain", {"device": "f1"}, {"temperature": 18.5}),
    Point("with space", {"tag key": "tag value"}, {"field key": 1.0}),
    Point("with,comma", {"k,1": "v,1"}, {"f,1": 2.0}),
    Point("with=equals", {"k=1": "v=1"}, {"f=1": 3.0}),
    Point('with"quote', {'k"1': 'v"1'}, {"f1": 'say "hi"'}),
    Point("back\\slash", {"path": "C:\\temp\\x"}, {"s": "a\\b\\\\c\\"}),
    Point("ünïcødé ✓", {"cuve": "n°1 — été"}, {"température": 4.25, "état": "prête ✓"}),
    Point("types", {"t": "x"}, {"f": -1.5e-7, "i": -(2**63), "u": UInt(2**64 - 1), "yes": True, "no": False}),
    Point("strings", {"t": "x"}, {"empty": "", "newline": "line1\nline2", "tab": "a\tb", "comma": "a, b=c"}),
]


def _read_back(client: InfluxDBClient, bucket: str) -> list[Point]:
    query = f"""
from(bucket: "{bucket}")
  |> range(start: 0)
  |> drop(columns: ["_start", "_stop"])
"""
    points: dict[tuple[str, tuple[tuple[str, str], ...], int], Point] = {}
    for table in client.query_api().query(query):
        for rec in table.records:
            values = dict(rec.values)
            measurement = values.pop("_measurement")
            field, value, when = values.pop("_field"), values.pop("_value"), values.pop("_time")
            values.pop("result", None)
            values.pop("table", None)
            tags = {k: str(v) for k, v in values.items() if v is not None}
            time_ns = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
            key = (measurement, tuple(sorted(tags.items())), time_ns)
            points.setdefault(key, Point(measurement, tags, {}, time_ns)).fields[field] = value
    return list(points.values())


def test_tricky_lines_round_trip_through_influxdb(influx: InfluxEndpoint, bucket: str) -> None:
    base = time.time_ns() // 1000 * 1000  # Flux returns microsecond precision through the Python client
    written = [Point(p.measurement, p.tags, p.fields, base + i * 1000) for i, p in enumerate(TRICKY)]
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=format_lines(written))
        read = _read_back(client, bucket)

    def normalize(p: Point) -> tuple[str, dict[str, str], dict[str, object], int | None]:
        # Flux hands uint back as int; compare values, the type letter was checked by the parser tests.
        return (
            p.measurement,
            p.tags,
            {k: int(v) if isinstance(v, UInt) else v for k, v in p.fields.items()},
            p.time_ns,
        )

    # Annotated CSV (what Flux answers in) cannot tell "" from null, and the client's CSV reader turns a newline
    # inside a value into \r\n; those two are compared inside InfluxDB instead, below.
    csv_ambiguous = {("strings", "empty"), ("strings", "newline")}

    def comparable(points: list[Point]) -> list[tuple[str, dict[str, str], dict[str, object], int | None]]:
        out = []
        for p in points:
            m, tags, fields, t = normalize(p)
            out.append((m, tags, {k: v for k, v in fields.items() if (m, k) not in csv_ambiguous}, t))
        return sorted(out, key=repr)

    assert comparable(read) == comparable(written)

    # Every string field, compared byte for byte by InfluxDB itself.
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        for point in written:
            for key, value in point.fields.items():
                if not isinstance(value, str):
                    continue
                query = (
                    f"from(bucket: {_flux_string(bucket)}) |> range(start: 0)"
                    f" |> filter(fn: (r) => r._measurement == {_flux_string(point.measurement)}"
                    f" and r._field == {_flux_string(key)} and r._value == {_flux_string(value)}) |> count()"
                )
                counts = [rec.get_value() for table in client.query_api().query(query) for rec in table.records]
                assert counts == [1], f"{point.measurement}.{key} = {value!r} not stored identically"


def _flux_string(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("${", "\\${")
    )
    return f'"{escaped}"'
