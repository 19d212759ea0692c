"""``telestack actuator``: the HTTP API for device commands, edge-box ingest and the /ui page."""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from telestack.actuator.app import create_app
from telestack.actuator.registry import load_registry
from telestack.actuator.server import ActuatorServer, uvicorn_config
from telestack.actuator.service import ActuatorService
from telestack.actuator.settings import ActuatorSettings
from telestack.actuator.tokens import TokenStore
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.kafka import KafkaProducer
from telestack.core.mqtt import make_client
from telestack.core.runtime import configure_logging, get_logger
from telestack.core.topics import require_topics

__all__ = ["build_app", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, ActuatorSettings)


def build_app(settings: ActuatorSettings) -> FastAPI:
    """Registry, token store, Kafka producer and MQTT client from `settings`, wired into the app."""
    options = settings.actuator
    registry = load_registry(options.devices_file)
    tokens = TokenStore(options.tokens_file)
    require_topics(settings.kafka, [settings.kafka.topics.commands, settings.kafka.topics.telemetry])
    # Records not confirmed within kafka_timeout_s fail for good, so a 503 does not hide a late write.
    producer = KafkaProducer(settings.kafka, config={"message.timeout.ms": int(options.kafka_timeout_s * 1000)})
    client = make_client(settings.mqtt, client_id=options.mqtt_client_id)
    return create_app(ActuatorService(settings, registry, tokens, producer, client))


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(ActuatorSettings, args)
    configure_logging(settings.log, "actuator")
    log = get_logger("actuator")
    options = settings.actuator
    app = build_app(settings)
    if app.state.service.tokens.active_count() == 0:
        log.warning(
            "no active token: every API call will get 401; create one with 'telestack tokens create'",
            tokens_file=str(options.tokens_file),
        )
    server = ActuatorServer(uvicorn_config(app, options))
    scheme = "https" if options.tls_certfile else "http"
    log.info("serving", url=f"{scheme}://{options.http.host}:{options.http.port}{options.root_path}/ui")
    server.run()  # handles SIGTERM/SIGINT: stops accepting, drains requests, then the lifespan stops the service
    return 0 if server.started else 1
