"""``telestack can-gateway``: CAN buses (or recorded logs) → DBC decoding → Kafka, with a disk spool."""

from __future__ import annotations

import argparse

from telestack.can_gateway.databases import DecoderSet
from telestack.can_gateway.gateway import Gateway
from telestack.can_gateway.metrics import GatewayMetrics
from telestack.can_gateway.outbox import Outbox
from telestack.can_gateway.settings import CanGatewaySettings
from telestack.can_gateway.sources import BusSource, FrameSource, LogReplaySource
from telestack.can_gateway.spool import DiskSpool, OutRecord
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.kafka import KafkaProducer
from telestack.core.runtime import Logger, get_logger
from telestack.core.service import run_service

__all__ = ["build_gateway", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, CanGatewaySettings)


def build_gateway(settings: CanGatewaySettings, log: Logger | None = None) -> Gateway:
    """Everything the gateway needs, from settings; raises `TelestackError` subclasses naming what is wrong.

    Its metrics (``gateway.metrics``) are on a registry of its own."""
    options = settings.can_gateway
    log = log if log is not None else get_logger("can-gateway")
    decoders = DecoderSet(options)  # a broken DBC or mapping fails here, before any bus is opened
    sources: list[FrameSource] = (
        [LogReplaySource(options.replay)] if options.replay.files else [BusSource(bus) for bus in options.buses]
    )
    spool_settings = options.spool
    spool = DiskSpool(
        spool_settings.directory,
        max_bytes=spool_settings.max_bytes,
        segment_bytes=spool_settings.segment_bytes,
        on_full=spool_settings.on_full,
        log=log,
    )

    metrics = GatewayMetrics()
    records = metrics.records

    def delivered(record: OutRecord) -> None:
        records.labels(record.topic).inc()

    producer = KafkaProducer(settings.kafka)
    outbox = Outbox(
        producer,
        spool,
        stall_timeout_s=spool_settings.stall_timeout_s,
        retry_interval_s=spool_settings.retry_interval_s,
        max_in_flight_bytes=spool_settings.max_in_flight_bytes,
        log=log,
        on_delivered=delivered,
    )
    gateway = Gateway(options, settings.kafka.topics, outbox, sources, decoders, log=log, metrics=metrics)
    log.info(
        "reading",
        sources=[source.name for source in gateway.sources],
        vehicle=options.vehicle,
        databases=[str(p) for p in gateway.decoders.files],
    )
    return gateway


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(CanGatewaySettings, args)
    return run_service(
        "can-gateway", settings, lambda log: build_gateway(settings, log), http=settings.can_gateway.http
    )
