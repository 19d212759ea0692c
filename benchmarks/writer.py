"""influx-writer throughput: Kafka ``telemetry`` → InfluxDB, in field values/s and lines/s, the writer's CPU,
and the end-to-end delay from a record's timestamp to the point being queryable.

Run with ``make bench-writer`` (reuses ``TELESTACK_TEST_ENDPOINTS`` if set, else starts native servers in a
temp dir). Phases:

1. backlog: ``--lines`` lines are produced first, then one ``telestack influx-writer`` process drains them;
   the rate is measured on its ``lines_written`` metric, its CPU from the kernel's rusage of the process;
2. latency: while the writer runs, probe points stamped "now" are produced under a steady background load
   and polled in InfluxDB until visible;
3. client comparison: the same batches posted with raw httpx (the writer's path) and with influxdb-client's
   write API, CPU seconds per million lines of the posting process;
4. Telegraf side by side (unless ``--no-telegraf``): Telegraf's ``inputs.kafka_consumer`` (``data_format =
   "influx"``, at-least-once with ``max_undelivered_messages``, ``kafka_version = "4.0.0"``) →
   ``outputs.influxdb_v2`` (same batch size, gzip) drains the same backlog (produced the same way, at the same
   time, to a topic of its own) into its own bucket of the same InfluxDB. Its writes are timed by its own log
   ("Wrote batch of N metrics"), stamped as they are read.

Both are measured two ways: first to last write (``field_values_per_s``, ``telegraf_field_values_per_s``,
``ratio_vs_telegraf``; the first batch's lines are not counted, its write opens the span) and from process
launch to every line written, i.e. consumer lag 0 (``launch_field_values_per_s``,
``telegraf_launch_field_values_per_s``, ``launch_ratio_vs_telegraf``; start-up and first fetch included).

The last line of output is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from benchmarks.telegraf import TelegrafAgent, toml_string
from telestack.core.annotated_csv import iter_rows
from telestack.core.influx_http import InfluxHttp
from telestack.core.kafka import KafkaProducer, ensure_topics
from telestack.core.settings import InfluxSettings, KafkaSettings
from telestack.native import Endpoints
from telestack.native.servers import free_port
from telestack.native.stack import shared_or_own_servers

__all__ = ["main"]

FIELDS_PER_LINE = 4
TELESTACK = str(Path(sys.executable).with_name("telestack"))


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _line(i: int, t_ns: int) -> str:
    # A decoded CAN frame: 2 tags, 4 fields (float, float, int, float).
    return (
        f"EngineData,vehicle=ved-{i % 4:02d},bus=can{i % 3} "
        f"rpm={3000.0 + i % 997},throttle={(i % 100) / 4},gear={i % 6}i,coolant_temp={80 + (i % 40) / 8} {t_ns}"
    )


def _produce_backlog(kafka: KafkaSettings, topic: str, lines: int, per_record: int, base: int) -> float:
    producer = KafkaProducer(kafka, config={"linger.ms": 50, "batch.size": 1_000_000})
    started = time.perf_counter()
    for start in range(0, lines, per_record):
        value = "\n".join(_line(i, base + i * 1000) for i in range(start, min(lines, start + per_record)))
        producer.produce(topic, value, key=f"ved-{start % 16}")
    producer.flush(120)
    return time.perf_counter() - started


def _warm_group_coordinator(kafka: KafkaSettings, topic: str) -> float:
    """Commit one offset in a throwaway group: Kafka creates and loads ``__consumer_offsets`` on the first commit.

    On fresh servers the first group to join pays that (~3 s here: "Coordinator load in progress"): whichever of the
    writer and Telegraf ran first paid it alone, the writer in every run so far. Done before both, neither pays.
    """
    from confluent_kafka import Consumer, TopicPartition

    from telestack.core.kafka import _base_config

    started = time.perf_counter()
    consumer = Consumer({**_base_config(kafka), "group.id": f"{topic}-warm-up"})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    return time.perf_counter() - started


def _metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    for row in text.splitlines():
        if row.startswith(name + " "):
            return float(row.split()[1])
    return 0.0


def _count(api: InfluxHttp, flux: str) -> int:
    """The ``_value`` of the first row of a ``count()`` query (0 when it returns nothing)."""
    with api.query_csv(flux) as rows:
        for table, values in iter_rows(rows):
            return int(values[table.columns.index("_value")])
    return 0


def _latency_probes(kafka: KafkaSettings, influx: InfluxSettings, topic: str, probes: int) -> list[float]:
    """Produce probe points stamped now under background load; seconds until each is queryable."""
    stop = threading.Event()

    def background() -> None:  # ~20k lines/s in records of 10 lines
        producer = KafkaProducer(kafka)
        i = 0
        while not stop.is_set():
            now = time.time_ns()
            for _ in range(200):
                producer.produce(topic, "\n".join(_line(i + j, now + j) for j in range(10)), key=f"ved-{i % 16}")
                i += 10
            time.sleep(0.1)
        producer.flush(30)

    load = threading.Thread(target=background, daemon=True)
    load.start()
    producer = KafkaProducer(kafka, config={"linger.ms": 0})
    api = InfluxHttp(influx, gzip_level=0)
    delays: list[float] = []
    try:
        for n in range(probes):
            stamp = time.time_ns()
            producer.produce(topic, f"probe,n=p{n} v=1i {stamp}", key="probe")
            producer.poll(0)
            flux = (
                f'from(bucket: "{influx.bucket}") |> range(start: -1h) '
                f'|> filter(fn: (r) => r._measurement == "probe" and r.n == "p{n}") |> count()'
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if _count(api, flux) == 1:
                    delays.append((time.time_ns() - stamp) / 1e9)
                    break
                time.sleep(0.01)
            time.sleep(0.1)
    finally:
        stop.set()
        load.join(30)
        producer.flush(10)
        api.close()
    return delays


def _compare_clients(influx: InfluxSettings, lines: int) -> dict[str, float]:
    """CPU seconds of this process per million lines, posting 5000-line batches two ways."""
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    base = time.time_ns() - 7200 * 10**9
    batches = ["\n".join(_line(i, base + i) for i in range(s, s + 5000)) for s in range(0, lines, 5000)]
    out: dict[str, float] = {}
    api = InfluxHttp(influx, gzip_level=1)
    cpu, wall = time.process_time(), time.perf_counter()
    for body in batches:
        api.write(body.encode())
    out["httpx_gzip_cpu_s_per_mline"] = (time.process_time() - cpu) * 1e6 / lines
    out["httpx_gzip_lines_per_s"] = lines / (time.perf_counter() - wall)
    api.close()
    with InfluxDBClient(url=influx.url, token=influx.require_token(), org=influx.org, enable_gzip=True) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        cpu, wall = time.process_time(), time.perf_counter()
        for body in batches:
            write.write(bucket=influx.bucket, record=body)
        out["influxdb_client_cpu_s_per_mline"] = (time.process_time() - cpu) * 1e6 / lines
        out["influxdb_client_lines_per_s"] = lines / (time.perf_counter() - wall)
    return out


def _telegraf_config(endpoints: Endpoints, topic: str, bucket: str, run: str, batch: int, undelivered: int) -> str:
    return f"""[agent]
  interval = "10s"
  flush_interval = "1s"
  flush_jitter = "0s"
  metric_batch_size = {batch}
  metric_buffer_limit = {max(100_000, 20 * batch)}
  omit_hostname = true
  debug = true

[[inputs.kafka_consumer]]
  brokers = [{toml_string(endpoints.kafka.bootstrap_servers)}]
  topics = [{toml_string(topic)}]
  consumer_group = {toml_string(f"bench-tg-{run}")}
  offset = "oldest"
  kafka_version = "4.0.0"
  max_undelivered_messages = {undelivered}
  data_format = "influx"

[[outputs.influxdb_v2]]
  urls = [{toml_string(endpoints.influx.url)}]
  token = {toml_string(endpoints.influx.token)}
  organization = {toml_string(endpoints.influx.org)}
  bucket = {toml_string(bucket)}
  content_encoding = "gzip"
"""


def _run_telegraf(
    endpoints: Endpoints, workdir: Path, topic: str, bucket: str, run: str, lines: int, batch: int, undelivered: int
) -> dict[str, float]:
    """Telegraf drains the backlog topic into `bucket`: its rates, first to last write and from launch."""
    config = _telegraf_config(endpoints, topic, bucket, run, batch, undelivered)
    agent = TelegrafAgent(workdir, "telegraf-writer", config)
    wrote = re.compile(r"\[outputs\.influxdb_v2\] Wrote batch of (\d+) metrics")
    agent.start()
    cpu0 = 0.0
    try:
        deadline = time.monotonic() + 300
        while True:
            agent.check_alive()
            writes = [(t, int(m.group(1))) for t, text in list(agent.lines) if (m := wrote.search(text))]
            if len(writes) == 1 and not cpu0:
                cpu0 = agent.cpu_s()
            if sum(n for _, n in writes) >= lines:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Telegraf wrote {sum(n for _, n in writes)} of {lines} lines:\n{agent.tail()}")
            time.sleep(0.02)
        cpu_s = agent.cpu_s()
    finally:
        agent.stop()
    first, last = writes[0][0], writes[-1][0]
    written = sum(n for _, n in writes)
    span_lines = written - writes[0][1]
    return {
        "telegraf_field_values_per_s": round(span_lines * FIELDS_PER_LINE / (last - first)),
        "telegraf_launch_field_values_per_s": round(written * FIELDS_PER_LINE / (last - agent.started)),
        "telegraf_launch_to_lag0_s": round(last - agent.started, 2),
        "telegraf_cpu_us_per_line": round(cpu_s * 1e6 / written, 2),
        "telegraf_cpu_us_per_line_span": round((cpu_s - cpu0) * 1e6 / max(1, span_lines), 2),
        "telegraf_max_undelivered": undelivered,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.writer", description=__doc__)
    parser.add_argument("--lines", type=int, default=400_000, help="backlog lines (default 400000)")
    parser.add_argument("--lines-per-record", type=int, default=10, help="lines per Kafka record (default 10)")
    parser.add_argument("--probes", type=int, default=20, help="end-to-end latency probes (default 20)")
    parser.add_argument("--batch-lines", type=int, default=5000, help="writer batch size (default 5000)")
    parser.add_argument("--gzip-level", type=int, default=1, help="writer gzip level (default 1)")
    parser.add_argument("--no-telegraf", action="store_true", help="skip the side-by-side Telegraf phase")
    parser.add_argument(
        "--telegraf-undelivered",
        type=int,
        default=2000,
        help="Telegraf's max_undelivered_messages, in Kafka records (default 2000, i.e. 4 batches of lines)",
    )
    args = parser.parse_args(argv)

    with shared_or_own_servers("bench-writer-") as endpoints:
        run = uuid.uuid4().hex[:8]
        topic = f"bench-writer-{run}"
        kafka = KafkaSettings(bootstrap_servers=endpoints.kafka.bootstrap_servers)
        ensure_topics(kafka, {topic: 3, f"{topic}.dlq": 1, f"{topic}-tg": 3})
        operator = InfluxSettings(
            url=endpoints.influx.url,
            org=endpoints.influx.org,
            token=endpoints.influx.token,  # type: ignore[arg-type]
            timeout_ms=60_000,  # counting 1.6 M fresh points on a loaded machine took over 10 s
        )
        admin = InfluxHttp(operator, gzip_level=0)
        org_id = admin.api("GET", "/api/v2/orgs", params={"org": operator.org})["orgs"][0]["id"]
        bucket = admin.api("POST", "/api/v2/buckets", json_body={"orgID": org_id, "name": f"bench-{run}"})
        buckets = [bucket]
        influx = operator.model_copy(update={"bucket": bucket["name"]})
        try:
            _say(f"servers: {endpoints.versions()}")
            backlog_start = int(time.time()) - 3 * 3600  # s; the backlog's points are stamped from there
            produce_s = _produce_backlog(kafka, topic, args.lines, args.lines_per_record, backlog_start * 10**9)
            if not args.no_telegraf:  # the same backlog, for Telegraf alone (the latency phase adds to `topic`)
                _produce_backlog(kafka, f"{topic}-tg", args.lines, args.lines_per_record, backlog_start * 10**9)
            _say(
                f"backlog: {args.lines:,} lines in {args.lines // args.lines_per_record:,} records ({produce_s:.1f} s)"
            )
            warm_s = _warm_group_coordinator(kafka, topic)
            _say(f"group coordinator loaded (one commit, before both runs) in {warm_s:.2f} s")
            port = free_port()
            env = {
                **os.environ,
                **endpoints.env(),
                "TELESTACK_KAFKA__TOPICS__TELEMETRY": topic,
                "TELESTACK_KAFKA__TOPICS__DLQ": f"{topic}.dlq",
                "TELESTACK_INFLUX__BUCKET": influx.bucket,
                "TELESTACK_INFLUX_WRITER__GROUP_ID": f"bench-{run}",
                "TELESTACK_INFLUX_WRITER__BATCH_LINES": str(args.batch_lines),
                "TELESTACK_INFLUX_WRITER__GZIP_LEVEL": str(args.gzip_level),
                "TELESTACK_INFLUX_WRITER__HTTP__PORT": str(port),
                "TELESTACK_LOG__LEVEL": "WARNING",
            }
            launched = time.perf_counter()
            writer = subprocess.Popen([TELESTACK, "influx-writer"], env=env, start_new_session=True)
            name = "telestack_influx_writer_lines_written_total"
            while _metric(port, name) <= 0:
                time.sleep(0.02)
            t0, n0 = time.perf_counter(), _metric(port, name)
            cpu0 = _proc_cpu(writer.pid)
            while (written := _metric(port, name)) < args.lines:
                if writer.poll() is not None:
                    raise SystemExit(f"writer exited with {writer.returncode}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            launch_s = time.perf_counter() - launched
            cpu_s = _proc_cpu(writer.pid) - cpu0
            lines_per_s = (written - n0) / elapsed
            _say(f"drain: {written - n0:,.0f} lines in {elapsed:.2f} s")
            delays = _latency_probes(kafka, influx, topic, args.probes)
            os.killpg(writer.pid, signal.SIGTERM)
            writer.wait(60)
            stored = _count(
                admin,
                f'from(bucket: "{influx.bucket}") |> range(start: {backlog_start}, stop: {backlog_start + 3600})'
                ' |> filter(fn: (r) => r._measurement == "EngineData") |> group() |> count()',
            )
            clients = _compare_clients(influx, min(args.lines, 100_000))
            telegraf: dict[str, float] = {}
            if not args.no_telegraf:
                tg_bucket = admin.api("POST", "/api/v2/buckets", json_body={"orgID": org_id, "name": f"bench-{run}-tg"})
                buckets.append(tg_bucket)
                with tempfile.TemporaryDirectory(prefix="bench-writer-tg-") as workdir:
                    telegraf = _run_telegraf(
                        endpoints,
                        Path(workdir),
                        f"{topic}-tg",
                        tg_bucket["name"],
                        run,
                        args.lines,
                        args.batch_lines,
                        args.telegraf_undelivered,
                    )
                telegraf["telegraf_field_values_stored"] = _count(
                    admin,
                    f'from(bucket: "{tg_bucket["name"]}") |> range(start: {backlog_start}, '
                    f'stop: {backlog_start + 3600}) |> filter(fn: (r) => r._measurement == "EngineData") '
                    "|> group() |> count()",
                )
        finally:
            for each in buckets:
                with contextlib.suppress(Exception):
                    admin.api("DELETE", f"/api/v2/buckets/{each['id']}")
            admin.close()

    figures = {
        "field_values_per_s": round(lines_per_s * FIELDS_PER_LINE),
        "lines_per_s": round(lines_per_s),
        "lines": args.lines,
        "lines_per_record": args.lines_per_record,
        "fields_per_line": FIELDS_PER_LINE,
        "writer_cpu_s_per_s": round(cpu_s / elapsed, 3),
        "writer_cpu_us_per_line": round(cpu_s * 1e6 / max(1, written - n0), 2),
        "field_values_stored": stored,  # of the backlog: lines x fields when nothing was lost
        "e2e_delay_p50_ms": round(statistics.median(delays) * 1000, 1) if delays else None,
        "e2e_delay_max_ms": round(max(delays) * 1000, 1) if delays else None,
        "e2e_probes": len(delays),
        **{k: round(v, 2) for k, v in clients.items()},
        "launch_to_lag0_s": round(launch_s, 2),
        "launch_field_values_per_s": round(args.lines * FIELDS_PER_LINE / launch_s),
        **telegraf,
    }
    if telegraf:
        figures["ratio_vs_telegraf"] = round(lines_per_s * FIELDS_PER_LINE / telegraf["telegraf_field_values_per_s"], 2)
        figures["launch_ratio_vs_telegraf"] = round(
            args.lines * FIELDS_PER_LINE / launch_s / telegraf["telegraf_launch_field_values_per_s"], 2
        )
    _say(
        f"throughput: {figures['field_values_per_s']:,} field values/s, {figures['lines_per_s']:,} lines/s\n"
        f"writer CPU: {figures['writer_cpu_s_per_s']} cores busy, {figures['writer_cpu_us_per_line']} us/line\n"
        f"end-to-end delay (record timestamp → queryable, under ~20k lines/s load): "
        f"p50 {figures['e2e_delay_p50_ms']} ms, max {figures['e2e_delay_max_ms']} ms over {len(delays)} probes\n"
        f"raw httpx+gzip: {figures['httpx_gzip_cpu_s_per_mline']} CPU s per million lines; "
        f"influxdb-client: {figures['influxdb_client_cpu_s_per_mline']} CPU s per million lines\n"
        f"launch to lag 0: {figures['launch_to_lag0_s']} s, {figures['launch_field_values_per_s']:,} field values/s"
    )
    if telegraf:
        _say(
            f"Telegraf (kafka_consumer → influxdb_v2, same backlog): {telegraf['telegraf_field_values_per_s']:,} "
            f"field values/s first to last write (ratio {figures['ratio_vs_telegraf']}); launch to lag 0 "
            f"{telegraf['telegraf_launch_to_lag0_s']} s, {telegraf['telegraf_launch_field_values_per_s']:,} "
            f"field values/s (ratio {figures['launch_ratio_vs_telegraf']}); "
            f"{telegraf['telegraf_field_values_stored']:,} field values stored"
        )
    _say(json.dumps(figures))
    return 0


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


if __name__ == "__main__":
    raise SystemExit(main())
