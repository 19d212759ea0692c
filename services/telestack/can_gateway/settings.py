"""Settings of ``telestack can-gateway`` (section ``can_gateway``) and ``telestack can-replay``.

Example (``config/can_gateway.example.yaml`` has the full version)::

    can_gateway:
      vehicle: ved-01
      databases: [config/dbc/telestack_vehicle.dbc]
      buses:
        - {name: powertrain, interface: socketcan, channel: can0, bitrate: 1000000}
        - {name: battery, interface: socketcan, channel: can2, fd: true, data_bitrate: 5000000}
      mapping:
        EngineStatus: {measurement: engine, rename: {EngineSpeed: rpm}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from telestack.core.ports import SERVICE_PORTS
from telestack.core.settings import HttpSettings, KafkaSettings, Section, TelestackSettings

__all__ = [
    "SIMULATED_BUSES",
    "UDP_GROUP",
    "AggregationSettings",
    "BusSettings",
    "CanGatewaySettings",
    "GatewayOptions",
    "MessageMapping",
    "ReplaySettings",
    "SpoolSettings",
    "simulated_vehicle_buses",
]


UDP_GROUP = "239.74.163.2"  # python-can's default IPv4 group for udp_multicast


class BusSettings(Section):
    """One CAN bus: any interface python-can offers (socketcan, virtual, udp_multicast, slcan, pcan, kvaser...)."""

    name: str = Field(description="bus name, the `bus` tag of every line decoded from it")
    interface: str = Field("virtual", description="python-can interface")
    channel: str | int | None = Field(None, description="python-can channel (can0, 239.74.163.2, COM3...)")
    bitrate: int | None = Field(None, ge=1, description="nominal bitrate, bit/s (None: the interface's default)")
    fd: bool = Field(False, description="open the bus in CAN FD mode")
    data_bitrate: int | None = Field(None, ge=1, description="CAN FD data-phase bitrate, bit/s")
    databases: list[Path] = Field(
        default_factory=list, description="DBC/KCD/ARXML files for this bus; empty: the gateway-wide `databases`"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments for can.Bus")


class ReplaySettings(Section):
    """Replay of recorded logs instead of live buses (also how old sessions are backfilled)."""

    files: list[Path] = Field(
        default_factory=list,
        description="log files (.log candump, .asc, .blf, .trc, .csv); when set, no live bus is opened",
    )
    speed: float = Field(1.0, ge=0, description="1 = recorded speed, 2 = twice as fast, 0 = as fast as possible")
    channels: dict[str, str] = Field(
        default_factory=dict,
        description='log channel → bus name (e.g. {"can0": "powertrain"}); unmapped channels keep their name',
    )
    default_bus: str = Field("replay", description="bus name of frames whose log records no channel")
    loop: bool = Field(False, description="start the files again when they end")
    reader: Literal["auto", "python-can"] = Field(
        "auto",
        description="auto: telestack's fast candump reader for .log files, python-can for the rest; "
        "python-can: always python-can's readers",
    )


class SpoolSettings(Section):
    """Store-and-forward: where records wait while Kafka is unreachable."""

    directory: Path = Field(Path("spool/can-gateway"), description="spool directory (created if missing)")
    max_bytes: int = Field(1_073_741_824, ge=1_048_576, description="bound of the spool on disk, bytes")
    segment_bytes: int = Field(8_388_608, ge=65_536, description="size of one spool file, bytes")
    on_full: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="what goes when the bound is hit: the oldest spooled data or the new data"
    )
    stall_timeout_s: float = Field(
        10.0, gt=0, description="a record unconfirmed this long means Kafka is unreachable: spool from then on, s"
    )
    retry_interval_s: float = Field(2.0, gt=0, description="how often to probe Kafka while spooling, s")
    max_in_flight_bytes: int = Field(
        33_554_432, ge=65_536, description="records handed to Kafka but unconfirmed, at most (bytes); beyond: spool"
    )


class MessageMapping(Section):
    """How one message becomes line protocol."""

    measurement: str | None = Field(None, description="measurement name (default: the message name)")
    signals: list[str] | None = Field(None, description="signals to keep (default: all)")
    exclude: list[str] = Field(default_factory=list, description="signals to drop")
    rename: dict[str, str] = Field(default_factory=dict, description="signal → field name")
    signal_measurements: dict[str, str] = Field(
        default_factory=dict, description="signal → measurement, for signals written to their own measurement"
    )


AggregateFunction = Literal["mean", "min", "max", "last", "count"]
_ALL_FUNCTIONS: tuple[AggregateFunction, ...] = ("mean", "min", "max", "last", "count")


class AggregationSettings(Section):
    """Edge aggregation for thin links: one line per series and interval instead of one per frame."""

    interval_s: float = Field(0.0, ge=0, description="aggregation interval, s (0 = off: one line per frame)")
    functions: list[AggregateFunction] = Field(
        default_factory=lambda: list(_ALL_FUNCTIONS),
        description="statistics written per field (<field>_<function>)",
    )
    grace_s: float = Field(
        1.0, ge=0, description="a window is sent once a frame this long past its end was seen on its bus, s"
    )


# The buses of `telestack simulate vehicle`: (name, UDP port, CAN FD). One multicast group, one port per bus: a
# host delivers a port's datagrams of every joined group to every socket bound to that port, so distinct groups
# on one port would mix the buses.
SIMULATED_BUSES: tuple[tuple[str, int, bool], ...] = (
    ("powertrain", 43113, False),
    ("chassis", 43114, False),
    ("battery", 43115, True),
)


def simulated_vehicle_buses(*, sender: bool = False) -> list[BusSettings]:
    """The simulated car's buses, as the gateway reads them or (`sender`) as the simulator sends on them.

    The sender also states the bitrates (its bus-load pacing uses them) and a multicast hop limit of 0: the
    frames reach processes on this host (and in its network namespace, as in compose) but never leave it;
    python-can's default of 1 would put them on the local network.
    """
    return [
        BusSettings(
            name=name,
            interface="udp_multicast",
            channel=UDP_GROUP,
            fd=fd,
            options={"port": port, "hop_limit": 0} if sender else {"port": port},
            **({"bitrate": 1_000_000, "data_bitrate": 5_000_000 if fd else None} if sender else {}),
        )
        for name, port, fd in SIMULATED_BUSES
    ]


class GatewayOptions(Section):
    vehicle: str = Field("vehicle", description="vehicle id: the `vehicle` tag and the Kafka key")
    databases: list[Path] = Field(
        default_factory=lambda: [Path("config/dbc/telestack_vehicle.dbc")],
        description="DBC/KCD/ARXML files used for buses that name none",
    )
    buses: list[BusSettings] = Field(
        default_factory=lambda: simulated_vehicle_buses(),
        description="the CAN buses to read (default: the three buses of `telestack simulate vehicle`)",
    )
    replay: ReplaySettings = Field(default_factory=lambda: ReplaySettings())
    mapping: dict[str, MessageMapping] = Field(default_factory=dict, description="message name → mapping")
    choices: Literal["string", "number", "both"] = Field(
        "string",
        description="value tables: the label (string field), the number, or both (number + `<field>_label`)",
    )
    mux_tag: str = Field("mux", description="tag holding the multiplexer value(s) of multiplexed messages")
    key: Literal["vehicle", "vehicle_bus"] = Field(
        "vehicle", description="Kafka key: the vehicle id, or vehicle/bus (more partitions, order per bus)"
    )
    raw: bool = Field(True, description="also send every frame to the can.raw topic")
    forward_unknown: bool = Field(
        False, description="send frames of unknown ids as raw lines (measurement can_unknown) to telemetry too"
    )
    batch_lines: int = Field(2000, ge=1, description="lines per telemetry record, at most")
    batch_bytes: int = Field(524_288, ge=1024, description="bytes per Kafka record, at most")
    batch_ms: float = Field(50.0, ge=0, description="longest a line or frame waits before its record is sent, ms")
    reload_interval_s: float = Field(
        2.0, ge=0, description="how often database files are checked for changes (hot reload); 0 = never"
    )
    aggregation: AggregationSettings = Field(default_factory=lambda: AggregationSettings())
    spool: SpoolSettings = Field(default_factory=lambda: SpoolSettings())
    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=SERVICE_PORTS["can-gateway"]))

    @field_validator("buses")
    @classmethod
    def _unique_bus_names(cls, buses: list[BusSettings]) -> list[BusSettings]:
        names = [bus.name for bus in buses]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"bus names must be unique; repeated: {', '.join(duplicates)}")
        return buses

    @model_validator(mode="after")
    def _some_input(self) -> GatewayOptions:
        if not self.buses and not self.replay.files:
            raise ValueError("configure at least one bus (can_gateway.buses) or a log to replay (replay.files)")
        return self

    def bus(self, name: str) -> BusSettings | None:
        return next((bus for bus in self.buses if bus.name == name), None)

    def databases_of(self, bus_name: str) -> list[Path]:
        bus = self.bus(bus_name)
        return list(bus.databases) if bus is not None and bus.databases else list(self.databases)


class CanGatewaySettings(TelestackSettings):
    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())
    can_gateway: GatewayOptions = Field(default_factory=lambda: GatewayOptions())
