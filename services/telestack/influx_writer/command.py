"""``telestack influx-writer``: Kafka ``telemetry`` → InfluxDB, commit after write, bad lines to the DLQ."""

from __future__ import annotations

import argparse

from telestack.core.backoff import Backoff
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.influx_http import InfluxHttp
from telestack.core.kafka import KafkaProducer
from telestack.core.runtime import service_runtime
from telestack.core.topics import require_topics
from telestack.influx_writer.adaptive import write_sizer
from telestack.influx_writer.dead_letters import DeadLetterQueue
from telestack.influx_writer.flusher import Flusher
from telestack.influx_writer.service import WriterService
from telestack.influx_writer.settings import WriterSettings

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, WriterSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(WriterSettings, args)
    token = settings.influx.require_token()
    options = settings.influx_writer
    with service_runtime("influx-writer", settings.log, options.http) as rt:
        require_topics(settings.kafka, [settings.kafka.topics.telemetry, settings.kafka.topics.dlq])
        sink = InfluxHttp(settings.influx, token=token, gzip_level=options.gzip_level)
        producer = KafkaProducer(settings.kafka)
        flusher = Flusher(
            sink,
            DeadLetterQueue(producer, settings.kafka.topics.dlq),
            Backoff(options.retry_initial_ms / 1000, options.retry_max_ms / 1000),
            max_in_flight=options.max_in_flight,
            log=rt.log,
            sizer=write_sizer(settings),
        ).start()
        service = WriterService(settings, flusher, log=rt.log)
        rt.health.add_check("influx", flusher.health.probe)
        rt.health.add_check("kafka", service.kafka_probe)
        try:
            service.run(rt.shutdown)
        finally:
            producer.close()
            sink.close()
    return 0
