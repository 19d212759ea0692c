"""``telestack actuator``: the HTTP API for device commands, edge-box ingest and the /ui page."""

from __future__ import annotations

import argparse
import threading

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
from telestack.core.runtime import Check, Logger, Shutdown, get_logger
from telestack.core.service import ServiceBase, run_service
from telestack.core.topics import require_topics

__all__ = ["ActuatorProcess", "build_app", "configure", "run"]


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


class ActuatorProcess(ServiceBase):
    """The app under uvicorn. It serves /healthz and /metrics itself, on its API port; the app's lifespan starts
    and stops the `ActuatorService`."""

    name = "actuator"

    def __init__(self, settings: ActuatorSettings, log: Logger | None = None) -> None:
        self.options = settings.actuator
        self.log: Logger = log if log is not None else get_logger("actuator")
        self.app = build_app(settings)
        self.service: ActuatorService = self.app.state.service
        self.metrics = self.service.metrics
        self.server = ActuatorServer(uvicorn_config(self.app, self.options))

    def health(self) -> list[Check]:
        return self.service.health()

    def run(self, shutdown: Shutdown) -> int:
        """Serve until SIGTERM/SIGINT (uvicorn's own handlers: stop accepting, drain) or `shutdown` is set."""
        options = self.options
        if self.service.tokens.active_count() == 0:
            self.log.warning(
                "no active token: every API call will get 401; create one with 'telestack tokens create'",
                tokens_file=str(options.tokens_file),
            )
        scheme = "https" if options.tls_certfile else "http"
        self.log.info("serving", url=f"{scheme}://{options.http.host}:{options.http.port}{options.root_path}/ui")
        served = threading.Event()

        def stop_on_shutdown() -> None:
            while not served.is_set():
                if shutdown.wait(0.2):
                    self.server.should_exit = True
                    return

        threading.Thread(target=stop_on_shutdown, name="actuator-shutdown", daemon=True).start()
        try:
            self.server.run()
        finally:
            served.set()
        return 0 if self.server.started else 1


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(ActuatorSettings, args)
    return run_service("actuator", settings, lambda log: ActuatorProcess(settings, log), http=None)
