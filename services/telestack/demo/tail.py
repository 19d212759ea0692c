"""``telestack tail``: the latest value of every series, live in the terminal, from Kafka ``telemetry``.

For people without Grafana: one row per series (measurement and tags), its fields' latest values and their
age, redrawn every second. It reads every partition of the topic from its end, in no consumer group (it joins
none and commits nothing, so it takes nothing from the services); it says on stderr once it follows the topic::

    telestack tail                                   # everything
    telestack tail -m fermenter -m plug              # some measurements (globs work: -m 'Bms*')
    telestack tail --tag device=f1 --field 'temp*'
    telestack tail --run-dir .native/demo            # the Kafka of `telestack demo`
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from confluent_kafka import KafkaException
from pydantic import Field

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.errors import ConfigError, KafkaError, LineProtocolError
from telestack.core.kafka import Record
from telestack.core.lineproto import FieldValue, Point, iter_lines, parse_line
from telestack.core.runtime import Shutdown
from telestack.core.settings import KafkaSettings, TelestackSettings
from telestack.core.topic_reader import assign_from, reader_consumer

__all__ = ["LatestValues", "SeriesFilter", "TailSettings", "configure", "run"]

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class SeriesFilter:
    """Which points to show: measurement globs, tag globs (key=glob), field globs; empty means all."""

    measurements: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    fields: tuple[str, ...] = ()

    def keeps(self, point: Point) -> bool:
        if self.measurements and not any(fnmatch.fnmatchcase(point.measurement, m) for m in self.measurements):
            return False
        return all(fnmatch.fnmatchcase(point.tags.get(key, ""), glob) for key, glob in self.tags)

    def keeps_field(self, name: str) -> bool:
        return not self.fields or any(fnmatch.fnmatchcase(name, glob) for glob in self.fields)


@dataclass
class _Series:
    values: dict[str, tuple[FieldValue, int]] = field(default_factory=dict)  # field → (value, time ns)
    updated_ns: int = 0


def _show(value: FieldValue) -> str:
    """A field value as people read it.

    >>> from telestack.core.lineproto import UInt
    >>> _show(21.456789), _show(True), _show(UInt(7)), _show(1875395), _show("TH..")
    ('21.46', 'true', '7', '1875395', 'TH..')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e6 or (value != 0 and abs(value) < 1e-3) else f"{value:.2f}"
    return str(int(value)) if isinstance(value, int) else str(value)


def _age(seconds: float) -> str:
    """
    >>> _age(0.4), _age(75), _age(4000)
    ('0s', '1m15s', '1h06m')
    """
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LatestValues:
    """The latest value of each field of each series seen; pure (the time is passed in)."""

    def __init__(self, series_filter: SeriesFilter | None = None) -> None:
        self.filter = series_filter or SeriesFilter()
        self.series: dict[SeriesKey, _Series] = {}
        self.points = 0
        self.bad_lines = 0

    def add_text(self, text: str, arrival_ns: int) -> None:
        """Add every line of a telemetry record; bad lines are counted, not shown."""
        for _, line in iter_lines(text):
            try:
                point = parse_line(line)
            except LineProtocolError:
                self.bad_lines += 1
                continue
            self.add(point, arrival_ns)

    def add(self, point: Point, arrival_ns: int) -> None:
        if not self.filter.keeps(point):
            return
        key = (point.measurement, tuple(sorted(point.tags.items())))
        series = self.series.setdefault(key, _Series())
        at = point.time_ns if point.time_ns is not None else arrival_ns
        for name, value in point.fields.items():
            if not self.filter.keeps_field(name):
                continue
            previous = series.values.get(name)
            if previous is None or at >= previous[1]:
                series.values[name] = (value, at)
                series.updated_ns = max(series.updated_ns, at)
        self.points += 1

    def render(self, now_ns: int, width: int = 120, max_rows: int | None = None) -> list[str]:
        """The table: one line per series (newest first when rows are limited), fields folded to `width`.

        >>> latest = LatestValues()
        >>> latest.add(Point("fermenter", {"device": "f1"}, {"temperature": 18.04, "cooling": False}, 10**9), 0)
        >>> latest.render(now_ns=3 * 10**9, width=80)[1:]
        ['fermenter device=f1    2s  cooling=false temperature=18.04']
        """
        rows = [(key, series) for key, series in self.series.items() if series.values]
        rows.sort(key=lambda item: (item[0][0], item[0][1]))
        if max_rows is not None and len(rows) > max_rows:
            rows = sorted(rows, key=lambda item: -item[1].updated_ns)[:max_rows]
            rows.sort(key=lambda item: (item[0][0], item[0][1]))
        names = [f"{m} {' '.join(f'{k}={v}' for k, v in tags)}".strip() for (m, tags), _ in rows]
        name_width = min(max([len(n) for n in names] + [len("series")]), max(20, width // 2))
        header = f"{'series':<{name_width}} {'age':>5}  fields ({self.points} points, {len(rows)} series)"
        lines = [header[:width]]
        for name, (_, series) in zip(names, rows, strict=True):
            age = _age(max(0, now_ns - series.updated_ns) / 1e9)
            fields = " ".join(f"{k}={_show(v)}" for k, (v, _) in sorted(series.values.items()))
            line = f"{name[:name_width]:<{name_width}} {age:>5}  {fields}"
            lines.append(line if len(line) <= width else line[: width - 1] + "…")
        return lines


class TailSettings(TelestackSettings):
    """What ``telestack tail`` reads: where Kafka is and the topic names."""

    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__
    parser.add_argument("-m", "--measurement", action="append", default=[], help="measurement glob (repeatable)")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=GLOB", help="tag filter (repeatable)")
    parser.add_argument("--field", action="append", default=[], metavar="GLOB", help="field glob (repeatable)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between redraws (default: 1)")
    parser.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds and print the table once"
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="read Kafka's address from this native run directory's endpoints.json (e.g. .native/demo)",
    )
    add_settings_arguments(parser, TailSettings)


def _filter(args: argparse.Namespace) -> SeriesFilter:
    tags = []
    for item in args.tag:
        key, sep, glob = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag expects KEY=GLOB, got {item!r}")
        tags.append((key, glob))
    return SeriesFilter(tuple(args.measurement), tuple(tags), tuple(args.field))


def _kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    settings = settings_from_args(TailSettings, args).kafka
    if args.run_dir is None:
        return settings
    from telestack.native.endpoints import Endpoints

    path = args.run_dir / "endpoints.json"
    if not path.exists():
        raise ConfigError(f"{path} does not exist: is a native stack or demo running from {args.run_dir}?")
    return settings.model_copy(update={"bootstrap_servers": Endpoints.load(path).kafka.bootstrap_servers})


class TopicEnd:
    """Every partition of a topic, from its end at the start: records written after it, in no consumer group.

    There is no group to join, so nothing to wait for: what is written once the constructor returned is read (a
    consumer group reading "from the latest" took seconds to join, and missed what came meanwhile: ci47).
    """

    def __init__(self, settings: KafkaSettings, topic: str, timeout_s: float = 30) -> None:
        self.errors: collections.deque[str] = collections.deque(maxlen=20)  # the last ones: tail may run for days
        try:
            self._consumer = reader_consumer(settings, "tail", error_cb=lambda err: self.errors.append(str(err)))
        except KafkaException as exc:
            raise KafkaError(f"cannot read {topic}: {exc}") from exc
        try:
            assign_from(self._consumer, topic, timeout_s=timeout_s, from_end=True)
            self.partitions = len(self._consumer.assignment())
        except KafkaException as exc:
            self._consumer.close()
            raise KafkaError(f"cannot read {topic} (is Kafka at {settings.bootstrap_servers}?): {exc}") from exc
        except BaseException:
            self._consumer.close()
            raise

    def consume(self, max_records: int, timeout_s: float) -> list[Record]:
        records = []
        for message in self._consumer.consume(max_records, timeout_s):
            err = message.error()
            if err is None:
                records.append(Record.from_message(message))
            elif err.fatal():
                raise KafkaError(f"reading {message.topic()}: {err}")
            else:
                self.errors.append(str(err))
        return records

    def close(self) -> None:
        self._consumer.close()


def follow(
    consumer: TopicEnd,
    latest: LatestValues,
    shutdown: Shutdown,
    out: TextIO,
    *,
    interval_s: float,
    duration_s: float | None,
    clear: bool,
) -> None:
    """Consume and redraw every `interval_s` until `shutdown`; with `duration_s`, one table at the end only."""
    started = time.monotonic()
    next_draw = started
    while not shutdown.is_set():
        for record in consumer.consume(max_records=1000, timeout_s=min(0.5, interval_s)):
            latest.add_text(record.value.decode("utf-8", errors="replace"), time.time_ns())
        now = time.monotonic()
        if duration_s is not None and now - started >= duration_s:
            break
        if duration_s is None and now >= next_draw:
            _draw(out, latest, clear=clear)
            next_draw = now + interval_s
    if duration_s is not None:
        _draw(out, latest, clear=False)


def _draw(out: TextIO, latest: LatestValues, *, clear: bool) -> None:
    size = shutil.get_terminal_size((120, 40))
    lines = latest.render(time.time_ns(), width=size.columns, max_rows=size.lines - 2 if clear else None)
    if len(lines) == 1:
        lines.append("(waiting for telemetry...)")
    out.write(("\x1b[H\x1b[2J" if clear else "\n") + "\n".join(lines) + "\n")
    out.flush()


def _run_consumer(settings: KafkaSettings, args: argparse.Namespace, shutdown: Shutdown) -> None:
    topic = settings.topics.telemetry
    consumer = TopicEnd(settings, topic)
    sys.stderr.write(f"telestack tail: following {topic} ({consumer.partitions} partitions) from its newest records\n")
    sys.stderr.flush()
    try:
        follow(
            consumer,
            LatestValues(_filter(args)),
            shutdown,
            sys.stdout,
            interval_s=args.interval,
            duration_s=args.duration,
            clear=sys.stdout.isatty(),
        )
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> int:
    settings = _kafka_settings(args)
    with Shutdown() as shutdown:
        _run_consumer(settings, args, shutdown)
    return 0
