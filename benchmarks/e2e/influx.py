"""What InfluxDB holds of a load run: sequence numbers per series (loss and duplicates) and the newest one
visible now (latency), through Flux over plain HTTP."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

from telestack.native import InfluxEndpoint

__all__ = ["CAN_MEASUREMENT", "MQTT_MEASUREMENT", "InfluxQuery", "SeqCount", "series_key"]

csv.field_size_limit(2**31 - 1)  # string fields may be long (hostile-input tests store 200 KB ones)

CAN_MEASUREMENT = "bench_can"  # tags vehicle, bus; field seq
MQTT_MEASUREMENT = "bench_mqtt"  # tag device; field seq


def series_key(measurement: str, row: dict[str, str]) -> str:
    """``can/<bus>`` or ``mqtt/<device>``: the unit sequence numbers count in."""
    if measurement == CAN_MEASUREMENT:
        return f"can/{row.get('bus', '')}"
    return f"mqtt/{row.get('device', '')}"


@dataclass
class SeqCount:
    """Rows per sequence number of one series, as read from InfluxDB."""

    rows: int = 0
    seen: dict[int, int] = field(default_factory=dict)  # seq → rows holding it

    def missing(self, expected: int) -> list[int]:
        return [seq for seq in range(expected) if seq not in self.seen]

    def duplicated(self) -> list[int]:
        return [seq for seq, n in self.seen.items() if n > 1]


class InfluxQuery:
    """Flux queries on one bucket, answers as dicts of column → text."""

    def __init__(self, endpoint: InfluxEndpoint, bucket: str, timeout_s: float = 120) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self._client = httpx.Client(
            base_url=endpoint.url,
            headers={"Authorization": f"Token {endpoint.token}", "Accept": "application/csv"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._client.close()

    def rows(self, flux: str) -> list[dict[str, str]]:
        response = self._client.post(
            "/api/v2/query",
            params={"org": self.endpoint.org},
            json={"query": flux, "type": "flux", "dialect": {"header": True, "annotations": []}},
        )
        if response.status_code >= 300:
            raise RuntimeError(f"Flux query failed: {response.status_code} {response.text[:300]}")
        out: list[dict[str, str]] = []
        header: list[str] | None = None
        for row in csv.reader(io.StringIO(response.text)):
            if not row or not any(row):
                header = None  # a blank line separates tables, each with its own header
            elif header is None:
                header = row
            else:
                out.append(dict(zip(header, row, strict=False)))
        return out

    def newest_seqs(self, window_s: int = 60) -> dict[str, int]:
        """The sequence number of the newest point of every series written in the last `window_s` seconds.

        ``last()`` is answered from the storage engine's index of each series' newest block, so this stays
        cheap under load; points of one series are written in order, so the newest holds the highest seq.
        """
        found: dict[str, int] = {}
        for measurement in (CAN_MEASUREMENT, MQTT_MEASUREMENT):
            flux = (
                f'from(bucket: "{self.bucket}") |> range(start: -{window_s}s, stop: 1d) '
                f'|> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "seq") |> last()'
            )
            for row in self.rows(flux):
                found[series_key(measurement, row)] = int(row["_value"])
        return found

    def seq_counts(self, measurements: Iterable[str] = (CAN_MEASUREMENT, MQTT_MEASUREMENT)) -> dict[str, SeqCount]:
        """Every stored sequence number of every series (the loss and duplicate check, after a run)."""
        counts: dict[str, SeqCount] = {}
        for measurement in measurements:
            flux = (
                f'from(bucket: "{self.bucket}") |> range(start: 0, stop: 2100-01-01T00:00:00Z) '
                f'|> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "seq") '
                '|> keep(columns: ["_value", "bus", "device"])'
            )
            for row in self.rows(flux):
                count = counts.setdefault(series_key(measurement, row), SeqCount())
                seq = int(row["_value"])
                count.rows += 1
                count.seen[seq] = count.seen.get(seq, 0) + 1
        return counts
