"""Export a time range of a bucket to Parquet or CSV, streamed: the range is read in time chunks and
written in row groups, so memory stays flat however long the range.

One row per series and timestamp (fields pivoted into columns)::

    time, measurement, <tag columns...>, <field columns...>

Parquet keeps the exact types (time as ns timestamps, int64, uint64, float64, bool, string) and records
which columns are tags and fields in the file's metadata (key ``telestack``), which `telestack.influx_writer
.importer` reads back. CSV writes times as RFC 3339 with nanoseconds and floats always with a decimal point.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from telestack.core.annotated_csv import format_rfc3339_ns, iter_rows
from telestack.core.influx_http import InfluxHttp
from telestack.influx_writer.errors import TransferError

__all__ = [
    "ExportQuery",
    "ExportSchema",
    "ExportStats",
    "discover_schema",
    "export_range",
    "flux_filter",
    "iter_points",
]

FileFormat = Literal["parquet", "csv"]
METADATA_KEY = b"telestack"
ARROW_TYPES = {
    "double": pa.float64(),
    "long": pa.int64(),
    "unsignedLong": pa.uint64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
RESERVED = {"time", "measurement"}
_BOOKKEEPING = {"_start", "_stop", "_time", "_measurement", "_field", "_value"}


def _flux_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class ExportQuery:
    """What to export: a bucket, a time range ``[start_ns, stop_ns)`` and optional filters."""

    bucket: str
    start_ns: int
    stop_ns: int
    measurements: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # (key, value): same key ORed, different keys ANDed
    fields: tuple[str, ...] = ()
    chunk_ns: int = 3600 * 10**9

    def chunks(self) -> Iterator[tuple[int, int]]:
        start = self.start_ns
        while start < self.stop_ns:
            stop = min(self.stop_ns, start + self.chunk_ns)
            yield start, stop
            start = stop


def flux_filter(query: ExportQuery) -> str:
    """The ``filter()`` steps for the query's measurement, tag and field filters ('' when none).

    >>> flux_filter(ExportQuery("b", 0, 1, measurements=("m",), tags=(("dev", "a"), ("dev", "b"))))
    '|> filter(fn: (r) => r._measurement == "m") |> filter(fn: (r) => r["dev"] == "a" or r["dev"] == "b")'
    """
    steps: list[str] = []
    if query.measurements:
        steps.append(" or ".join(f"r._measurement == {_flux_string(m)}" for m in query.measurements))
    by_key: dict[str, list[str]] = {}
    for key, value in query.tags:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        steps.append(" or ".join(f"r[{_flux_string(key)}] == {_flux_string(v)}" for v in values))
    if query.fields:
        steps.append(" or ".join(f"r._field == {_flux_string(f)}" for f in query.fields))
    return " ".join(f"|> filter(fn: (r) => {step})" for step in steps)


def _source(query: ExportQuery, start_ns: int, stop_ns: int) -> str:
    return (
        f"from(bucket: {_flux_string(query.bucket)}) "
        f"|> range(start: {format_rfc3339_ns(start_ns)}, stop: {format_rfc3339_ns(stop_ns)}) {flux_filter(query)}"
    )


@dataclass
class ExportSchema:
    """Columns of the export: tag keys and field types (Flux type names), from every series in range."""

    tags: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return ["time", "measurement", *self.tags, *self.fields]

    def arrow(self) -> pa.Schema:
        columns = [
            pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
            pa.field("measurement", pa.string(), nullable=False),
            *(pa.field(tag, pa.string()) for tag in self.tags),
            *(pa.field(name, ARROW_TYPES[kind]) for name, kind in self.fields.items()),
        ]
        meta = json.dumps({"tags": self.tags, "fields": self.fields}).encode()
        return pa.schema(columns, metadata={METADATA_KEY: meta})


def discover_schema(api: InfluxHttp, query: ExportQuery) -> ExportSchema:
    """One cheap pass (the first point of each series) to learn the tag keys and field types."""
    flux = _source(query, query.start_ns, query.stop_ns) + ' |> first() |> drop(columns: ["_start", "_stop"])'
    tags: set[str] = set()
    fields: dict[str, str] = {}
    with api.query_csv(flux) as reader:
        for table, values in iter_rows(reader):
            row = dict(zip(table.columns, values, strict=True))
            tags.update(c for c in table.group if c not in _BOOKKEEPING)
            kind = table.datatypes[table.columns.index("_value")]
            name = str(row["_field"])
            if fields.setdefault(name, kind) != kind:
                raise TransferError(
                    f"field {name!r} is {fields[name]} in one measurement and {kind} in another; "
                    "export the measurements separately (--measurement)"
                )
    clash = (tags & set(fields)) | ((tags | set(fields)) & RESERVED)
    if clash:
        raise TransferError(
            f"{sorted(clash)} would be two columns (a tag and a field, or 'time'/'measurement'); "
            "narrow the export with --measurement or --field"
        )
    return ExportSchema(sorted(tags), dict(sorted(fields.items())))


def iter_points(api: InfluxHttp, query: ExportQuery) -> Iterator[tuple[int, dict[str, Any]]]:
    """(chunk stop ns, row) for every series and timestamp in range; rows map column name → value."""
    for start, stop in query.chunks():
        flux = (
            _source(query, start, stop)
            + ' |> drop(columns: ["_start", "_stop"])'
            + ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        )
        with api.query_csv(flux) as reader:
            for table, values in iter_rows(reader):
                row: dict[str, Any] = {}
                for name, value in zip(table.columns, values, strict=True):
                    if name == "_time":
                        row["time"] = value
                    elif name == "_measurement":
                        row["measurement"] = value
                    elif value is not None and value != "":
                        # Flux CSV writes a null and an empty string alike: a missing field or tag.
                        row[name] = value
                yield stop, row


class RowSink(Protocol):
    def add(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class ParquetSink:
    """Rows → Parquet row groups of `row_group_rows`; only one group is held in memory."""

    def __init__(self, path: Path, schema: ExportSchema, row_group_rows: int = 65_536) -> None:
        self.schema = schema
        self.arrow_schema = schema.arrow()
        self.row_group_rows = row_group_rows
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.columns}
        self.rows = 0
        self.writer = pq.ParquetWriter(str(path), self.arrow_schema, compression="zstd")

    def add(self, row: dict[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(row.get(name))
        self.rows += 1
        if self.rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        arrays = [pa.array(self.columns[f.name], type=f.type) for f in self.arrow_schema]
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.arrow_schema))
        for column in self.columns.values():
            column.clear()
        self.rows = 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(int(value))  # UInt's repr is UInt(n)
    return str(value)


class CsvSink:
    def __init__(self, path: Path, schema: ExportSchema) -> None:
        self.schema = schema
        self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.writer = csv.writer(self.file)
        self.writer.writerow(schema.columns)
        self.names = schema.columns[2:]

    def add(self, row: dict[str, Any]) -> None:
        self.writer.writerow(
            [format_rfc3339_ns(row["time"]), row["measurement"], *(_csv_cell(row.get(n)) for n in self.names)]
        )

    def close(self) -> None:
        self.file.close()


@dataclass
class ExportStats:
    rows: int
    schema: ExportSchema


class Progress(Protocol):
    def update(self, n: float) -> Any: ...

    def set_postfix_str(self, s: str, refresh: bool = True) -> Any: ...


def export_range(
    api: InfluxHttp, query: ExportQuery, path: Path, file_format: FileFormat, progress: Progress | None = None
) -> ExportStats:
    """Write the query's points to `path`; `progress` (a tqdm bar over seconds of data) is advanced per chunk."""
    schema = discover_schema(api, query)
    sink: RowSink = ParquetSink(path, schema) if file_format == "parquet" else CsvSink(path, schema)
    rows = 0
    done_ns = query.start_ns
    try:
        for chunk_stop, row in iter_points(api, query):
            sink.add(row)
            rows += 1
            if chunk_stop != done_ns and progress is not None:
                progress.update((chunk_stop - done_ns) / 1e9)
                progress.set_postfix_str(f"{rows:,} rows")
            done_ns = chunk_stop
    finally:
        sink.close()
    if progress is not None:
        progress.update((query.stop_ns - done_ns) / 1e9)
        progress.set_postfix_str(f"{rows:,} rows")
    return ExportStats(rows, schema)
