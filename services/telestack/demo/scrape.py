"""Prometheus /metrics of the services → InfluxDB points, in the shape Telegraf's prometheus input gives them.

Without Docker there is no Telegraf: `telestack demo` scrapes the services itself and writes what
``telegraf/telegraf.conf`` would (metric_version 2): measurement ``prometheus``, one field per sample (the
sample's full name, e.g. ``telestack_influx_writer_lines_written_total``), the sample's labels, ``url`` and
``service`` as tags. The Pipeline health dashboard reads the same points from either.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

from telestack.core.lineproto import Point, format_lines
from telestack.core.runtime import get_logger

__all__ = ["MetricsScraper", "points_from_metrics"]

log = get_logger("demo.scrape")


def points_from_metrics(text: str, *, service: str, url: str, time_ns: int, prefix: str = "telestack_") -> list[Point]:
    """The points Telegraf would make of one scrape; only samples named `prefix`*, no ``*_created``.

    >>> text = 'telestack_x_lines_total{bus="a"} 3.0\\ntelestack_x_lines_created{bus="a"} 1.7e9\\n'
    >>> [p.to_line() for p in points_from_metrics(text, service="x", url="http://h:1/metrics", time_ns=5)]
    ['prometheus,bus=a,service=x,url=http://h:1/metrics telestack_x_lines_total=3.0 5']
    """
    points: list[Point] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(prefix) or sample.name.endswith("_created"):
                continue
            value = float(sample.value)
            if not math.isfinite(value):
                continue
            tags = {key: str(val) for key, val in sample.labels.items() if str(val) != ""}
            tags.update(service=service, url=url)
            points.append(Point("prometheus", dict(sorted(tags.items())), {sample.name: value}, time_ns))
    return points


class MetricsScraper:
    """Scrapes `targets` (service → /metrics URL) every `interval_s` and writes the points to InfluxDB."""

    def __init__(
        self,
        targets: Mapping[str, str],
        *,
        influx_url: str,
        org: str,
        bucket: str,
        token: str,
        interval_s: float = 10.0,
    ) -> None:
        self.targets = dict(targets)
        self.interval_s = interval_s
        self._write_url = f"{influx_url}/api/v2/write"
        self._write_params = {"org": org, "bucket": bucket, "precision": "ns"}
        self._client = httpx.Client(timeout=5, headers={"Authorization": f"Token {token}"})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-scraper", daemon=True)
        self.scrapes = 0

    def start(self) -> MetricsScraper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._client.close()

    def scrape_once(self) -> int:
        """One scrape of every target; returns the number of points written."""
        now_ns = time.time_ns()
        points: list[Point] = []
        for service, url in self.targets.items():
            try:
                response = self._client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                log.debug("scrape failed", service=service, url=url, error=str(exc))
                continue
            points.extend(points_from_metrics(response.text, service=service, url=url, time_ns=now_ns))
        if points:
            response = self._client.post(self._write_url, params=self._write_params, content=format_lines(points))
            if response.status_code >= 300:
                log.warning("writing metrics failed", status=response.status_code, body=response.text[:200])
                return 0
        self.scrapes += 1
        return len(points)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.scrape_once()
            except httpx.HTTPError as exc:
                log.warning("writing metrics failed", error=str(exc))
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
