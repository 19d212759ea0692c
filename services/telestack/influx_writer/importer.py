"""Import an export file (Parquet or CSV, see `telestack.influx_writer.export`) into a bucket, streamed.

Parquet files say which columns are tags and fields and their types (metadata key ``telestack``). CSV
files do not: the tag columns are named by the caller and each field value's type is read from its
text (``true``/``false``, an integer, a number with a decimal point or exponent, else a string), which
is how the exporter writes them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from telestack.core.annotated_csv import parse_rfc3339_ns
from telestack.core.errors import LineProtocolError
from telestack.core.influx_http import InfluxHttp
from telestack.core.lineproto import FieldValue, Point, UInt, format_point
from telestack.influx_writer.errors import TransferError
from telestack.influx_writer.export import METADATA_KEY, FileFormat, Progress

__all__ = ["ImportStats", "csv_value", "import_file", "iter_file_points"]

_INT = re.compile(r"^-?\d+$")


def csv_value(text: str) -> FieldValue:
    """A field value from its CSV text.

    >>> csv_value("3"), csv_value("3.0"), csv_value("true"), csv_value("HP..")
    (3, 3.0, True, 'HP..')
    """
    if text in ("true", "false"):
        return text == "true"
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _parquet_points(path: Path) -> Iterator[Point]:
    file = pq.ParquetFile(str(path))
    meta = (file.schema_arrow.metadata or {}).get(METADATA_KEY)
    if meta is None:
        raise TransferError(f"{path} was not written by telestack export (no {METADATA_KEY.decode()} metadata)")
    layout = json.loads(meta)
    tags: list[str] = layout["tags"]
    fields: dict[str, str] = layout["fields"]
    for batch in file.iter_batches(batch_size=16_384):
        times = batch.column("time").cast(pa.int64()).to_pylist()
        measurements = batch.column("measurement").to_pylist()
        tag_columns = [(name, batch.column(name).to_pylist()) for name in tags]
        field_columns = [(name, fields[name] == "unsignedLong", batch.column(name).to_pylist()) for name in fields]
        for i, time_ns in enumerate(times):
            point_fields: dict[str, FieldValue] = {}
            for name, unsigned, values in field_columns:
                value = values[i]
                if value is not None:
                    point_fields[name] = UInt(value) if unsigned else value
            if point_fields:
                point_tags = {name: values[i] for name, values in tag_columns if values[i]}
                yield Point(measurements[i], point_tags, point_fields, time_ns)


def _csv_points(path: Path, tag_columns: Sequence[str]) -> Iterator[Point]:
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None or header[:2] != ["time", "measurement"]:
            raise TransferError(f"{path}: expected a header starting with time,measurement (a telestack export)")
        missing = set(tag_columns) - set(header)
        if missing:
            raise TransferError(f"{path}: tag columns {sorted(missing)} are not in the file")
        tags = [(i, name) for i, name in enumerate(header) if name in tag_columns]
        fields = [(i, name) for i, name in enumerate(header[2:], start=2) if name not in tag_columns]
        for row_no, row in enumerate(reader, start=2):
            point_fields = {name: csv_value(row[i]) for i, name in fields if row[i] != ""}
            if point_fields:
                try:
                    time_ns = parse_rfc3339_ns(row[0])
                except ValueError as exc:
                    raise TransferError(f"{path} line {row_no}: {exc}") from exc
                yield Point(row[1], {name: row[i] for i, name in tags if row[i]}, point_fields, time_ns)


def iter_file_points(path: Path, file_format: FileFormat, tag_columns: Sequence[str] = ()) -> Iterator[Point]:
    if file_format == "parquet":
        return _parquet_points(path)
    return _csv_points(path, tag_columns)


@dataclass
class ImportStats:
    points: int


def import_file(
    api: InfluxHttp,
    path: Path,
    file_format: FileFormat,
    *,
    bucket: str,
    tag_columns: Sequence[str] = (),
    batch_lines: int = 5_000,
    progress: Progress | None = None,
) -> ImportStats:
    """Write every row of the file as a point into `bucket`, `batch_lines` lines per request."""
    lines: list[str] = []
    points = 0

    def flush() -> None:
        if lines:
            api.write("\n".join(lines).encode(), bucket=bucket)
            if progress is not None:
                progress.update(len(lines))
            lines.clear()

    for point in iter_file_points(path, file_format, tag_columns):
        try:
            lines.append(format_point(point))
        except LineProtocolError as exc:
            raise TransferError(f"{path}: row {points + 1} cannot be written: {exc}") from exc
        points += 1
        if len(lines) >= batch_lines:
            flush()
    flush()
    return ImportStats(points)
