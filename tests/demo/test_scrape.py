"""The native stand-in for Telegraf: /metrics → InfluxDB points of Telegraf's shape, on a real InfluxDB."""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from threading import Thread

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import MetricsHandler

from telestack.core.settings import InfluxSettings
from telestack.demo.scrape import MetricsScraper, points_from_metrics
from tests.polling import wait_until


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    frames = Counter("telestack_test_frames", "frames", ["bus"], registry=registry)
    frames.labels("powertrain").inc(5)
    Histogram("telestack_test_write_seconds", "writes", buckets=(0.1, 1), registry=registry).observe(0.3)
    Counter("python_gc_things", "not ours", registry=registry).inc()
    return registry


def test_points_have_telegrafs_shape() -> None:
    from prometheus_client import generate_latest

    text = generate_latest(_registry()).decode()
    points = points_from_metrics(text, service="can-gateway", url="http://h:9101/metrics", time_ns=7)
    fields = {next(iter(p.fields)): p for p in points}
    assert set(fields) == {
        "telestack_test_frames_total",
        "telestack_test_write_seconds_bucket",
        "telestack_test_write_seconds_count",
        "telestack_test_write_seconds_sum",
    }
    frames = fields["telestack_test_frames_total"]
    assert frames.measurement == "prometheus"
    assert frames.tags == {"bus": "powertrain", "service": "can-gateway", "url": "http://h:9101/metrics"}
    assert frames.fields == {"telestack_test_frames_total": 5.0}
    buckets = [p for p in points if "telestack_test_write_seconds_bucket" in p.fields]
    assert {p.tags["le"] for p in buckets} == {"0.1", "1.0", "+Inf"}


def test_scraper_writes_to_influxdb(influx_settings: InfluxSettings) -> None:
    registry = _registry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    token = influx_settings.require_token()
    scraper = MetricsScraper(
        {"can-gateway": url},
        influx_url=influx_settings.url,
        org=influx_settings.org,
        bucket=influx_settings.bucket,
        token=token,
        interval_s=0.5,
    ).start()
    query = (
        f'from(bucket: "{influx_settings.bucket}") |> range(start: -5m)'
        ' |> filter(fn: (r) => r._measurement == "prometheus" and r._field == "telestack_test_frames_total")'
    )

    def rows() -> int:
        response = httpx.post(
            f"{influx_settings.url}/api/v2/query",
            params={"org": influx_settings.org},
            headers={"Authorization": f"Token {token}"},
            json={"query": query, "dialect": {"annotations": []}},
            timeout=10,
        )
        return response.text.count("powertrain")

    try:
        wait_until(lambda: rows() >= 2, timeout_s=20, what="two scrapes in InfluxDB")
    finally:
        scraper.stop()
        server.shutdown()
    assert scraper.scrapes >= 2
