"""The actuator: commands to devices over MQTT with ack tracking, HTTP ingest for edge boxes, scoped tokens,
an audit trail in Kafka ``commands``, and a /ui page (``telestack actuator``, ``telestack tokens``)."""

from telestack.actuator.app import create_app
from telestack.actuator.errors import ActuatorError, RegistryError, RequestError, TokenStoreError
from telestack.actuator.registry import Registry, load_registry
from telestack.actuator.service import ActuatorService
from telestack.actuator.settings import ActuatorOptions, ActuatorSettings
from telestack.actuator.tokens import Principal, TokenStore

__all__ = [
    "ActuatorError",
    "ActuatorOptions",
    "ActuatorService",
    "ActuatorSettings",
    "Principal",
    "Registry",
    "RegistryError",
    "RequestError",
    "TokenStore",
    "TokenStoreError",
    "create_app",
    "load_registry",
]
