"""What every simulated MQTT device shares: a connection, a publish tick, and the command protocol.

A kind (fermenter, meter, plug) subclasses `SimulatedDevice`: its state and physics (`advance`), what it
publishes (`messages`), and how it obeys commands (`execute`). `DeviceFleet` runs devices the way real ones
behave: one MQTT client per device (its own login, client id and last will), a message every ``--interval``,
and for each `DeviceCommand` on ``devices/{device}/cmd`` a `DeviceAck` on ``devices/{device}/ack`` with the
state after the command (see `telestack.core.commands`). A command id seen before (a QoS 1 redelivery) is
acknowledged again without being executed twice.

With `device_logins` (the command line's default) each device logs in as itself: user name = its id, password
derived from ``mqtt.password``, the simulators' secret (`telestack.core.mqtt.device_password`; the broker's
password file holds the same), so the broker's ACL gives each only its own topics, as for real devices.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import paho.mqtt.client as paho
from pydantic import Field, SecretStr, ValidationError

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.commands import DEFAULT_ACK_TOPIC, DEFAULT_COMMAND_TOPIC, DeviceAck, DeviceCommand
from telestack.core.errors import TelestackError
from telestack.core.mqtt import connect, device_password, make_client
from telestack.core.runtime import Shutdown, configure_logging, get_logger
from telestack.core.settings import MqttSettings, TelestackSettings

__all__ = [
    "CommandRefused",
    "DeviceFleet",
    "Message",
    "MqttSimulatorSettings",
    "SimulatedDevice",
    "add_device_arguments",
    "run_fleet",
]

Message = tuple[str, str, bool]  # topic, payload, retain

# Command ids remembered per device, to answer a redelivered command without executing it again.
_SEEN_COMMANDS = 256


class CommandRefused(TelestackError):
    """A device refuses a command (unknown, bad arguments, out of range); the reason goes into its ack."""


class MqttSimulatorSettings(TelestackSettings):
    """The settings a device simulator reads: the broker (``mqtt``), ``device_logins`` and ``log``."""

    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings())
    device_logins: bool = Field(
        True,
        description="each device logs in as itself (user = its id, password derived from mqtt.password, the "
        "simulators' secret), as real devices do; false: every device logs in as mqtt.username",
    )


class SimulatedDevice(ABC):
    """One device's state, physics, telemetry and commands; `DeviceFleet` calls it under a lock."""

    kind: ClassVar[str]

    def __init__(self, device_id: str, rng: random.Random) -> None:
        self.device_id = device_id
        self.rng = rng

    @abstractmethod
    def advance(self, dt_s: float) -> None:
        """Move the physics on by `dt_s` seconds."""

    @abstractmethod
    def messages(self) -> list[Message]:
        """What the device publishes now, in its own format."""

    @abstractmethod
    def execute(self, command: str, args: dict[str, Any]) -> None:
        """Obey `command` or raise `CommandRefused` with the reason."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The state reported in acks."""

    def will(self) -> Message | None:
        """The last will the broker publishes if the device drops off, if any."""
        return None

    def on_connect_messages(self) -> list[Message]:
        """Published once connected (e.g. a retained ``online`` status)."""
        return []


class _Link:
    """One device's MQTT client and the bookkeeping of its commands."""

    def __init__(self, device: SimulatedDevice, client: paho.Client, command_topic: str, ack_topic: str) -> None:
        self.device = device
        self.client = client
        self.command_topic = command_topic
        self.ack_topic = ack_topic
        self.lock = threading.Lock()
        self.seen: OrderedDict[str, DeviceAck] = OrderedDict()


class DeviceFleet:
    """Runs devices over MQTT: telemetry every `interval_s`, commands obeyed and acknowledged."""

    def __init__(
        self,
        settings: MqttSettings,
        devices: Sequence[SimulatedDevice],
        *,
        interval_s: float,
        qos: int = 1,
        command_topic: str = DEFAULT_COMMAND_TOPIC,
        ack_topic: str = DEFAULT_ACK_TOPIC,
        client_id_prefix: str = "telestack",
        device_logins: bool = False,
        log: Any = None,
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.qos = qos
        self.log = log or get_logger("simulator")
        self.links: dict[str, _Link] = {}
        for device in devices:
            if device_logins:
                login = self._login_of(device.device_id)
                client = make_client(login, client_id=device.device_id)  # the broker makes it so anyway
            else:
                client = make_client(settings, client_id=f"{client_id_prefix}-{device.kind}-{device.device_id}")
            will = device.will()
            if will is not None:
                client.will_set(will[0], will[1], qos=1, retain=will[2])
            link = _Link(
                device,
                client,
                command_topic.format(device=device.device_id),
                ack_topic.format(device=device.device_id),
            )
            client.on_connect = self._on_connect_for(link)
            client.on_message = self._on_message_for(link)
            self.links[device.device_id] = link
        self.published = 0
        self.commands = 0

    # --- MQTT ---------------------------------------------------------------------------------------------

    def _login_of(self, device_id: str) -> MqttSettings:
        """The settings of `device_id` logging in as itself: its id, its password derived from mqtt.password."""
        if self.settings.password is None:
            raise TelestackError("device logins derive each device's password from mqtt.password: set it")
        password = device_password(self.settings.password.get_secret_value(), device_id)
        return self.settings.model_copy(update={"username": device_id, "password": SecretStr(password)})

    def _on_connect_for(self, link: _Link) -> Callable[..., None]:
        def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if reason.is_failure:
                self.log.warning("mqtt connection refused", device=link.device.device_id, reason=str(reason))
                return
            client.subscribe(link.command_topic, qos=1)
            with link.lock:
                greetings = link.device.on_connect_messages()
            for topic, payload, retain in greetings:
                client.publish(topic, payload, qos=1, retain=retain)

        return on_connect

    def _on_message_for(self, link: _Link) -> Callable[..., None]:
        def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
            self._handle_command(link, bytes(msg.payload))

        return on_message

    def _handle_command(self, link: _Link, payload: bytes) -> None:
        device = link.device
        try:
            command = DeviceCommand.model_validate_json(payload)
        except ValidationError as exc:
            command_id = _command_id(payload)
            self.log.warning("invalid command", device=device.device_id, error=str(exc).splitlines()[0])
            if command_id is None:
                return  # nothing to answer to
            with link.lock:
                ack = DeviceAck(
                    id=command_id,
                    status="error",
                    reason="invalid command: expected {id, command, args, ts_ms}",
                    state=device.state(),
                    ts_ms=time.time_ns() // 1_000_000,
                )
            self._publish_ack(link, ack)
            return
        with link.lock:
            seen = link.seen.get(command.id)
            fresh = seen is None
            if seen is None:
                ack = self._execute(device, command)
                link.seen[command.id] = ack
                if len(link.seen) > _SEEN_COMMANDS:
                    link.seen.popitem(last=False)
            else:
                ack = seen
            telemetry = device.messages() if fresh and ack.status == "ok" else []
        self.commands += 1
        self.log.info(
            "command",
            device=device.device_id,
            command=command.command,
            args=command.args,
            status=ack.status,
            reason=ack.reason,
            repeated=not fresh,
        )
        self._publish_ack(link, ack)
        for topic, text, retain in telemetry:  # the new state, without waiting for the next tick
            link.client.publish(topic, text, qos=self.qos, retain=retain)

    @staticmethod
    def _execute(device: SimulatedDevice, command: DeviceCommand) -> DeviceAck:
        try:
            device.execute(command.command, command.args)
        except CommandRefused as exc:
            return DeviceAck(
                id=command.id, status="error", reason=str(exc), state=device.state(), ts_ms=time.time_ns() // 1_000_000
            )
        return DeviceAck(id=command.id, status="ok", state=device.state(), ts_ms=time.time_ns() // 1_000_000)

    def _publish_ack(self, link: _Link, ack: DeviceAck) -> None:
        link.client.publish(link.ack_topic, ack.model_dump_json(exclude_none=True), qos=1)

    # --- loop ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        for link in self.links.values():
            connect(link.client, self.settings, persistent=False)

    def tick(self, dt_s: float) -> None:
        """Advance every device by `dt_s` and publish its telemetry."""
        for link in self.links.values():
            with link.lock:
                link.device.advance(dt_s)
                messages = link.device.messages()
            for topic, payload, retain in messages:
                link.client.publish(topic, payload, qos=self.qos, retain=retain)
                self.published += 1

    def run(self, shutdown: Shutdown, *, ticks: int | None = None) -> None:
        """Publish every `interval_s` until `shutdown` (or `ticks` ticks), then disconnect."""
        self.start()
        self.log.info(
            "simulating", devices=list(self.links), interval_s=self.interval_s, broker=f"{self.settings.host}"
        )
        try:
            last = time.monotonic()
            done = 0
            while not shutdown.is_set() and (ticks is None or done < ticks):
                now = time.monotonic()
                self.tick(now - last if done else 0.0)
                last = now
                done += 1
                shutdown.wait(max(0.0, self.interval_s - (time.monotonic() - now)))
        finally:
            self.stop()

    def stop(self) -> None:
        for link in self.links.values():
            will = link.device.will()
            if will is not None and link.client.is_connected():
                # A clean disconnect does not fire the last will: say it ourselves.
                link.client.publish(will[0], will[1], qos=1, retain=will[2]).wait_for_publish(2)
            link.client.disconnect()
            link.client.loop_stop()


def _command_id(payload: bytes) -> str | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


# --- command line ---------------------------------------------------------------------------------------


def add_device_arguments(parser: argparse.ArgumentParser, *, devices: str, interval_s: float, what: str) -> None:
    """``--devices``, ``--interval``, ``--qos``, topics and the MQTT settings flags of a simulator kind."""
    group = parser.add_argument_group("simulator")
    group.add_argument("--devices", default=devices, help=f"comma-separated {what} ids (default: {devices})")
    group.add_argument(
        "--interval", type=float, default=interval_s, help=f"seconds between readings (default: {interval_s:g})"
    )
    group.add_argument("--qos", type=int, choices=(0, 1), default=1, help="QoS of the telemetry (default: 1)")
    group.add_argument(
        "--command-topic", default=DEFAULT_COMMAND_TOPIC, help=f"command topic (default: {DEFAULT_COMMAND_TOPIC})"
    )
    group.add_argument("--ack-topic", default=DEFAULT_ACK_TOPIC, help=f"ack topic (default: {DEFAULT_ACK_TOPIC})")
    group.add_argument("--seed", type=int, default=None, help="random seed, for reproducible readings")
    group.add_argument(
        "--ticks", type=int, default=None, help="stop after this many readings per device (default: run until ^C)"
    )
    add_settings_arguments(parser, MqttSimulatorSettings)


def run_fleet(args: argparse.Namespace, kind: str, make: Callable[[str, random.Random], SimulatedDevice]) -> int:
    """Build the devices from the command line and run them until SIGTERM/SIGINT."""
    settings = settings_from_args(MqttSimulatorSettings, args)
    with configure_logging(settings.log, f"simulate-{kind}"):
        return _run_fleet(args, settings, kind, make)


def _run_fleet(
    args: argparse.Namespace,
    settings: MqttSimulatorSettings,
    kind: str,
    make: Callable[[str, random.Random], SimulatedDevice],
) -> int:
    rng = random.Random(args.seed)
    ids = [device.strip() for device in args.devices.split(",") if device.strip()]
    if not ids:
        raise TelestackError("--devices needs at least one device id")
    fleet = DeviceFleet(
        settings.mqtt,
        [make(device_id, random.Random(rng.random())) for device_id in ids],
        interval_s=args.interval,
        qos=args.qos,
        command_topic=args.command_topic,
        ack_topic=args.ack_topic,
        client_id_prefix=settings.mqtt.client_id,
        device_logins=settings.device_logins,
        log=get_logger(f"simulate-{kind}"),
    )
    with Shutdown() as shutdown:
        fleet.run(shutdown, ticks=args.ticks)
    return 0
