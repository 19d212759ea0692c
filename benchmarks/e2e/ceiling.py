"""The ceiling of an end-to-end run: the same points written straight into the same InfluxDB, no Kafka, no services.

What the writer stores for a CAN frame of ``bench_seq.dbc`` is one line, ``bench_can,bus=…,vehicle=… seq=<n>i
<ns>``. Here those lines, for the three buses, are written by this process with the best request shape found by
a short search (lines per request, gzip or not, requests in flight), into a bucket of their own. Request bodies
are built before the clock starts: what is timed is InfluxDB taking them, the most any pipeline in front of it
could reach on this machine. An end-to-end rate divided by it says what the pipeline costs.
"""

from __future__ import annotations

import gzip
import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from telestack.native import InfluxEndpoint

__all__ = ["Ceiling", "Shape", "measure_ceiling"]

SHAPES_LINES = (5_000, 20_000)
SHAPES_GZIP = (0, 1)
SHAPES_IN_FLIGHT = (1, 2, 4)


@dataclass(frozen=True)
class Shape:
    lines: int
    gzip_level: int
    in_flight: int

    def describe(self) -> str:
        packing = f"gzip {self.gzip_level}" if self.gzip_level else "no gzip"
        return f"{self.lines} lines/request, {packing}, {self.in_flight} in flight"


@dataclass(frozen=True)
class Ceiling:
    frames_per_s: float
    shape: Shape
    tried: dict[str, float]  # shape → frames/s


def _lines(buses: list[str], vehicle: str, start: int, count: int, step_ns: int) -> Iterator[bytes]:
    base = time.time_ns() - 3600 * 10**9  # an hour back: inside any retention, never in the future
    for seq in range(start, start + count):
        for bus in buses:
            yield f"bench_can,bus={bus},vehicle={vehicle} seq={seq}i {base + seq * step_ns}".encode()


def _bodies(lines: Iterator[bytes], shape: Shape) -> list[bytes]:
    bodies = []
    while chunk := list(itertools.islice(lines, shape.lines)):
        body = b"\n".join(chunk)
        bodies.append(gzip.compress(body, compresslevel=shape.gzip_level) if shape.gzip_level else body)
    return bodies


def _create_bucket(http: httpx.Client, endpoint: InfluxEndpoint, bucket: str) -> None:
    org_id = http.get("/api/v2/orgs", params={"org": endpoint.org}).json()["orgs"][0]["id"]
    response = http.post("/api/v2/buckets", json={"orgID": org_id, "name": bucket, "retentionRules": []})
    if response.status_code not in (201, 422):
        raise RuntimeError(f"cannot create bucket {bucket}: {response.status_code} {response.text[:300]}")


def _write_all(http: httpx.Client, endpoint: InfluxEndpoint, bucket: str, bodies: list[bytes], shape: Shape) -> float:
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if shape.gzip_level:
        headers["Content-Encoding"] = "gzip"
    params = {"org": endpoint.org, "bucket": bucket, "precision": "ns"}

    def post(body: bytes) -> None:
        response = http.post("/api/v2/write", params=params, content=body, headers=headers)
        if response.status_code != 204:
            raise RuntimeError(f"ceiling write refused: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(shape.in_flight) as pool:
        list(pool.map(post, bodies))
    return time.perf_counter() - started


def measure_ceiling(
    endpoint: InfluxEndpoint,
    bucket: str,
    buses: list[str],
    *,
    vehicle: str = "ceiling",
    frames_per_try: int = 150_000,
    say: object = None,
) -> Ceiling:
    """Frames/s (one line per frame, `len(buses)` lines per sequence number) of the best request shape."""
    per_bus = frames_per_try // len(buses)
    tried: dict[Shape, float] = {}
    limits = httpx.Limits(max_connections=max(SHAPES_IN_FLIGHT), max_keepalive_connections=max(SHAPES_IN_FLIGHT))
    with httpx.Client(
        base_url=endpoint.url, headers={"Authorization": f"Token {endpoint.token}"}, timeout=120, limits=limits
    ) as http:
        _create_bucket(http, endpoint, bucket)
        next_seq = 0
        for lines, level, in_flight in itertools.product(SHAPES_LINES, SHAPES_GZIP, SHAPES_IN_FLIGHT):
            shape = Shape(lines, level, in_flight)
            # fresh sequence numbers each try: new points, as a live pipeline writes, never overwrites
            bodies = _bodies(_lines(buses, vehicle, next_seq, per_bus, 1_000_000), shape)
            next_seq += per_bus
            seconds = _write_all(http, endpoint, bucket, bodies, shape)
            tried[shape] = per_bus * len(buses) / seconds
            if callable(say):
                say(f"  ceiling: {shape.describe()}: {tried[shape]:,.0f} frames/s")
    best = max(tried, key=tried.__getitem__)
    return Ceiling(round(tried[best], 1), best, {shape.describe(): round(rate, 1) for shape, rate in tried.items()})
