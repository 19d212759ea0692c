"""Reading InfluxDB's annotated CSV (the Flux query answer) table by table, with typed values.

>>> text = '''#datatype,string,long,dateTime:RFC3339,double,string,string
... #group,false,false,false,false,true,true
... #default,_result,,,,,
... ,result,table,_time,_value,_field,_measurement
... ,,0,2023-11-14T22:13:20.5Z,1,v,m
... '''
>>> import csv
>>> [(t.columns, sorted(t.group), row) for t, row in iter_rows(csv.reader(text.splitlines()))]
[(['_time', '_value', '_field', '_measurement'], ['_field', '_measurement'], [1700000000500000000, 1.0, 'v', 'm'])]
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from telestack.core.errors import InfluxError, InfluxQueryError
from telestack.core.lineproto import UInt

__all__ = ["Table", "format_rfc3339_ns", "iter_rows", "parse_rfc3339_ns"]


@lru_cache(maxsize=4096)
def _seconds(prefix: str) -> int:
    year, month, day = int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10])
    hour, minute, second = int(prefix[11:13]), int(prefix[14:16]), int(prefix[17:19])
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of a UTC RFC 3339 time as Flux writes it (``Z``, up to 9 decimals).

    >>> parse_rfc3339_ns("2023-11-14T22:13:20.000000017Z"), parse_rfc3339_ns("1970-01-01T00:00:01Z")
    (1700000000000000017, 1000000000)
    """
    if not text.endswith("Z") or len(text) < 20:
        raise ValueError(f"unexpected time {text!r} (expected UTC RFC 3339 such as 2023-11-14T22:13:20Z)")
    seconds = _seconds(text[:19])
    fraction = text[20:-1] if text[19] == "." else ""
    return seconds * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)


def format_rfc3339_ns(ns: int) -> str:
    """The Flux time literal of `ns` (UTC, nanoseconds).

    >>> format_rfc3339_ns(1700000000000000017), format_rfc3339_ns(0)
    ('2023-11-14T22:13:20.000000017Z', '1970-01-01T00:00:00.000000000Z')
    """
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def _bool(text: str) -> bool:
    return text == "true"


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "double": float,
    "long": int,
    "unsignedLong": lambda text: UInt(int(text)),
    "boolean": _bool,
    "string": str,
    "dateTime:RFC3339": parse_rfc3339_ns,
    "dateTime:RFC3339Nano": parse_rfc3339_ns,
    "duration": int,
    "base64Binary": str,
}


@dataclass
class Table:
    """The schema of one table of the answer: column names, their Flux types, which are in the group key."""

    columns: list[str]
    datatypes: list[str]
    group: set[str] = field(default_factory=set)
    result: str = ""  # the name of the result it belongs to (a query with several `yield`s has several)

    def converters(self) -> list[Callable[[str], Any]]:
        return [_CONVERTERS.get(kind, str) for kind in self.datatypes]


def iter_rows(reader: Iterable[list[str]]) -> Iterator[tuple[Table, list[Any]]]:
    """Each data row with its table's schema; empty cells of non-string columns are None.

    Raises `InfluxQueryError` when the answer carries a Flux error (InfluxDB answers 200 and streams an error
    table when a query fails after its first rows), `InfluxError` when a cell is not of its column's type.
    """
    datatypes: list[str] = []
    groups: list[str] = []
    defaults: list[str] = []
    table: Table | None = None
    converters: list[Callable[[str], Any]] = []
    table_keep: list[int] = []
    result_at: int | None = None
    error_table = False
    for row in reader:
        if not row or not any(row):
            table, error_table = None, False
            continue
        first = row[0]
        if first == "#datatype":
            datatypes, table = row[1:], None
        elif first == "#group":
            groups = row[1:]
        elif first == "#default":
            defaults = row[1:]
        elif first.startswith("#"):
            continue
        elif error_table:
            raise InfluxQueryError(row[1] if len(row) > 1 else ",".join(row))
        elif table is None:
            columns = row[1:]
            if columns[:1] == ["error"]:
                error_table = True  # the header of an error table; its row follows
                continue
            # Drop the bookkeeping columns "result" and "table".
            keep = [i for i, name in enumerate(columns) if name not in ("result", "table")]
            table = Table(
                [columns[i] for i in keep],
                [datatypes[i] if i < len(datatypes) else "string" for i in keep],
                {columns[i] for i in keep if i < len(groups) and groups[i] == "true"},
            )
            result_at = columns.index("result") if "result" in columns else None
            if result_at is not None and result_at < len(defaults):
                table.result = defaults[result_at]
            table_keep = keep
            converters = table.converters()
        else:
            cells = row[1:]
            if result_at is not None and result_at < len(cells) and cells[result_at]:
                table.result = cells[result_at]  # one name per table: the first row's
                result_at = None
            values: list[Any] = []
            for conv, kind, i in zip(converters, table.datatypes, table_keep, strict=True):
                text = cells[i] if i < len(cells) else ""
                try:
                    values.append(None if text == "" and kind != "string" else conv(text))
                except ValueError as exc:
                    raise InfluxError(f"unreadable {kind} {text!r} in InfluxDB's answer: {exc}") from exc
            yield table, values
    return
