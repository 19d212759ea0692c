"""``telestack simulate vehicle``: a racing car lapping a track, on three CAN buses, from the project DBC.

The driving model is a small lap simulation: the track is straights and corners; the speed profile respects a
lateral-grip limit in corners, an acceleration limit from the engine's power and a braking limit, computed
forward and backward once per lap. From position and speed follow the driver's inputs (pedals, steering),
gear and engine speed, wheel speeds (inner/outer wheel in corners), IMU accelerations and yaw rate, GPS
position, and a 144-cell battery pack whose current follows the power demand (regeneration under braking),
whose cell voltages sag with current and whose temperatures rise with it. Faults appear when a value leaves
its range.

Frames follow the DBC's cycle times (`rate_scale` multiplies every rate) or fill each bus to `bus_load`
(1.0 = saturated), sent on python-can buses (udp_multicast between processes, virtual inside one) and/or
written to a log file (`record`), in real time or as fast as possible (`realtime: false`, for recordings).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from telestack.can_gateway.settings import BusSettings, simulated_vehicle_buses
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.errors import ConfigError
from telestack.core.runtime import Shutdown, configure_logging, get_logger
from telestack.core.settings import Section, TelestackSettings

__all__ = ["VehicleModel", "VehicleSimulatorSettings", "configure", "run", "simulate"]

DEFAULT_DBC = Path("config/dbc/telestack_vehicle.dbc")
BUS_OF_SENDER = {"ECU": "powertrain", "VCU": "chassis", "BMS": "battery", "TCU": "battery"}
CELLS, MODULES, SENSORS_PER_MODULE = 144, 6, 12


class SimulatorOptions(Section):
    vehicle: str = Field("ved-01", description="vehicle name (used only in logs)")
    database: Path = Field(DEFAULT_DBC, description="the project DBC")
    buses: list[BusSettings] = Field(
        default_factory=lambda: simulated_vehicle_buses(sender=True),
        description="buses to send on (names: powertrain, chassis, battery; the gateway's defaults)",
    )
    send: bool = Field(True, description="send on the buses (false: only record)")
    record: Path | None = Field(None, description="also write every frame to this log file (.log, .asc, .blf...)")
    rate_scale: float = Field(1.0, gt=0, description="multiplies every message rate of the DBC")
    bus_load: float | None = Field(
        None, gt=0, le=1, description="fill each bus to this fraction of its bitrate (1.0 = saturated)"
    )
    duration_s: float = Field(0, ge=0, description="simulated time to run, s (0 = until stopped)")
    realtime: bool = Field(True, description="pace frames in real time (false: as fast as possible)")
    start_time: float | None = Field(None, description="timestamp of the first frame when not in real time, s")
    seed: int = Field(1, description="random seed (noise, cell spread)")


class VehicleSimulatorSettings(TelestackSettings):
    vehicle_simulator: SimulatorOptions = Field(default_factory=lambda: SimulatorOptions())


# --- the car ---------------------------------------------------------------------------------------------

TRACK = [(120, 0), (40, 25), (80, 0), (30, -12), (60, 0), (55, 40), (150, 0), (25, -9), (40, 0), (45, 18)]
MASS, POWER, A_LAT, A_BRAKE, V_TOP = 280.0, 80_000.0, 14.0, 15.0, 36.0
GEARS = [0, 2.9, 2.1, 1.7, 1.4, 1.2, 1.05]
FINAL_DRIVE, WHEEL_R, WHEELBASE, TRACK_W, STEER_RATIO = 3.8, 0.26, 1.55, 1.2, 5.0


@dataclass
class VehicleModel:
    """The state of the car; `step(dt)` advances it, `signals()` gives the DBC signal values."""

    seed: int = 1
    t: float = 0.0
    s: float = 0.0  # distance along the lap, m
    v: float = 0.0
    a: float = 0.0
    x: float = 0.0
    y: float = 0.0
    heading: float = 0.0
    odometer_km: float = 0.0
    soc: float = 0.92
    coolant: float = 60.0
    gear: int = 1
    rng: random.Random = field(init=False)
    profile: list[tuple[float, float]] = field(init=False)  # per metre: (curvature, speed limit)
    cell_offsets: list[float] = field(init=False)
    module_temps: list[float] = field(init=False)
    current: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        curv = [k for length, radius in TRACK for k in [1 / radius if radius else 0.0] * length]
        v = [min(V_TOP, math.sqrt(A_LAT / abs(k))) if k else V_TOP for k in curv]
        n = len(v)
        for _ in range(2):  # forward (power) and backward (braking) passes, twice for the lap wrap-around
            for i in range(1, 2 * n):
                prev, cur = v[(i - 1) % n], i % n
                a_acc = min(9.0, POWER / (MASS * max(prev, 5.0)))
                v[cur] = min(v[cur], math.sqrt(prev**2 + 2 * a_acc))
            for i in range(2 * n - 2, -1, -1):
                nxt, cur = v[(i + 1) % n], i % n
                v[cur] = min(v[cur], math.sqrt(nxt**2 + 2 * 0.8 * A_BRAKE))  # margin: the car tracks it
        self.profile = list(zip(curv, v, strict=True))
        self.cell_offsets = [self.rng.gauss(0, 0.006) for _ in range(CELLS)]
        self.module_temps = [25.0 + self.rng.uniform(-1, 1) for _ in range(MODULES)]

    def step(self, dt: float) -> None:
        lap = len(self.profile)
        i = int(self.s) % lap
        kappa, target = self.profile[i]
        v_new = self.v + max(-A_BRAKE, min(9.0, (target - self.v) / max(dt, 1e-3))) * dt
        self.a = (v_new - self.v) / dt
        self.v = max(0.0, v_new)
        ds = self.v * dt
        self.s = (self.s + ds) % lap
        self.heading += kappa * ds
        self.x += math.cos(self.heading) * ds
        self.y += math.sin(self.heading) * ds
        self.odometer_km += ds / 1000
        self.t += dt
        kmh = self.v * 3.6
        self.gear = 1 + sum(kmh > limit for limit in (35, 55, 75, 95, 115))
        power = MASS * self.a * self.v if self.a > 0 else 0.3 * MASS * self.a * self.v  # regen when braking
        voltage = self.pack_voltage()
        self.current = power / max(voltage, 1.0) + 2.0  # + auxiliaries
        self.soc = max(0.05, self.soc - self.current * dt / (15.5 * 3600))
        heat = self.current**2 * 0.0009
        self.module_temps = [
            temp + (heat * (1 + 0.05 * m) - (temp - 25) * 0.02) * dt for m, temp in enumerate(self.module_temps)
        ]
        self.coolant += ((70 + 25 * min(1.0, self.v / V_TOP)) - self.coolant) * 0.01 * dt

    def ocv(self) -> float:
        return 3.2 + 0.95 * self.soc

    def cell_voltage(self, n: int) -> float:
        return self.ocv() - self.current * 0.0012 + self.cell_offsets[n] + self.rng.gauss(0, 0.0008)

    def pack_voltage(self) -> float:
        return CELLS * (self.ocv() - self.current * 0.0012)

    def rpm(self) -> float:
        wheel_rps = self.v / (2 * math.pi * WHEEL_R)
        return max(1500.0, min(13_500.0, wheel_rps * 60 * GEARS[self.gear] * FINAL_DRIVE))

    def kappa(self) -> float:
        return self.profile[int(self.s) % len(self.profile)][0]

    def signals(self) -> dict[str, dict[str, Any]]:
        """Signal values per message name (multiplexed messages: see `mux_signals`)."""
        g, rng = 9.81, self.rng
        kappa, kmh = self.kappa(), self.v * 3.6
        throttle = max(0.0, min(100.0, self.a / 9.0 * 100 + (8 if self.v > 1 else 0)))
        brake = max(0.0, min(200.0, -self.a / A_BRAKE * 120))
        rpm = self.rpm()
        temps = [t for m in self.module_temps for t in [m]]
        cells = [self.cell_voltage(n) for n in range(CELLS)]
        self._cells = cells
        faults = {
            "OverTemperature": int(self.coolant > 105),
            "LowOilPressure": 0,
            "CellUnderVoltage": int(min(cells) < 3.0),
            "CellOverVoltage": int(max(cells) > 4.25),
            "PedalImplausible": int(throttle > 25 and brake > 30),
            "CanTimeout": 0,
        }
        code = 4097 if faults["OverTemperature"] else 8193 if faults["CellUnderVoltage"] else 0
        lat0, lon0 = 45.6117, 5.1509
        return {
            "EngineStatus": {
                "EngineSpeed": rpm,
                "EngineTorque": max(-300.0, min(300.0, throttle * 2.4 - (20 if brake else 0))),
                "CoolantTemp": round(self.coolant),
                "OilPressure": min(12.0, 1.0 + rpm / 1800),
                "ThrottlePosition": throttle,
                "EngineState": "RUNNING",
                "Gear": GEARS_NAMES[self.gear],
                "RevLimiterActive": int(rpm >= 13_400),
            },
            "VehicleSpeed": {
                "VehicleSpeed": kmh,
                "Odometer": self.odometer_km,
                "LongitudinalAccel": max(-32.0, min(32.0, self.a)),
            },
            "WheelSpeeds": {
                "WheelSpeedFL": max(0.0, kmh * (1 - kappa * TRACK_W / 2)),
                "WheelSpeedFR": max(0.0, kmh * (1 + kappa * TRACK_W / 2)),
                "WheelSpeedRL": max(0.0, kmh * (1 - kappa * TRACK_W / 2) * (1.02 if self.a > 3 else 1)),
                "WheelSpeedRR": max(0.0, kmh * (1 + kappa * TRACK_W / 2) * (1.02 if self.a > 3 else 1)),
            },
            "DriverInputs": {
                "AcceleratorPedal": throttle,
                "BrakePressureFront": brake,
                "BrakePressureRear": brake * 0.6,
                "SteeringAngle": math.degrees(math.atan(WHEELBASE * kappa)) * STEER_RATIO,
                "BrakeSwitch": int(brake > 2),
                "DriveMode": "RACE",
                "ShiftUpRequest": 0,
                "ShiftDownRequest": 0,
            },
            "Imu": {
                "AccelX": self.a / g + rng.gauss(0, 0.01),
                "AccelY": self.v**2 * kappa / g + rng.gauss(0, 0.01),
                "AccelZ": 1.0 + rng.gauss(0, 0.02),
                "YawRate": max(-327.0, min(327.0, math.degrees(self.v * kappa))),
            },
            "Faults": {
                "ActiveFaultCode": code,
                "FaultSeverity": "CRITICAL" if code else "INFO",
                "FaultCount": sum(faults.values()),
                "FaultUptime": self.t,
                **faults,
            },
            "BmsStatus": {
                "PackVoltage": sum(cells),
                "PackCurrent": max(-1600.0, min(1600.0, self.current)),
                "StateOfCharge": self.soc * 100,
                "BmsState": "DRIVE",
                "MinCellVoltage": min(cells),
                "MaxCellVoltage": max(cells),
                "MinCellTemp": round(min(temps)),
                "MaxCellTemp": round(max(temps)),
                "PackPower": round(sum(cells) * self.current),
            },
            "GpsPosition": {
                "Latitude": lat0 + self.y / 111_320,
                "Longitude": lon0 + self.x / (111_320 * math.cos(math.radians(lat0))),
                "Altitude": 240.0 + 0.5 * math.sin(self.s / 50),
                "GpsSpeed": kmh,
                "Satellites": 12,
                "FixType": "FIX_3D",
            },
        }

    def mux_signals(self, message: str, index: int) -> dict[str, Any]:
        """Signals of the `index`-th page of a multiplexed message (call after `signals`)."""
        if message == "BmsCellVoltages":
            group = index % 6
            cells = self._cells
            values: dict[str, Any] = {"CellGroup": group}
            for k in range(24):
                n = group * 24 + k
                values[f"Cell{n + 1:03d}Voltage"] = min(6.5, max(0.0, cells[n]))
            return values
        page = index % (MODULES + 1)
        if page < MODULES:
            base = self.module_temps[page]
            values = {"TempPage": 0, "TempModule": page}
            for k in range(SENSORS_PER_MODULE):
                values[f"Module{page + 1}Temp{k + 1:02d}"] = min(87.0, base + 0.15 * k + self.rng.gauss(0, 0.2))
            return values
        hottest = max(range(MODULES), key=lambda m: self.module_temps[m])
        return {
            "TempPage": 1,
            "CoolantInletTemp": 24.0,
            "CoolantOutletTemp": min(87.0, 24.0 + self.current * 0.01),
            "HottestModule": hottest,
            "FanDuty": min(100.0, max(0.0, (max(self.module_temps) - 28) * 10)),
        }


GEARS_NAMES = ["NEUTRAL", "FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH"]
MUX_PAGES = {"BmsCellVoltages": 6, "BmsTemperatures": MODULES + 1}


# --- frames ----------------------------------------------------------------------------------------------


def _frame_seconds(message: Any, bus: BusSettings) -> float:
    """Time one frame of `message` occupies `bus`, with ~15 % bit stuffing."""
    nominal = bus.bitrate or 500_000
    header = 67 if message.is_extended_frame else 47
    if message.is_fd:
        data_rate = bus.data_bitrate or nominal
        return 1.15 * ((header - 18) / nominal + (8 * message.length + 40) / data_rate)
    return 1.15 * (header + 8 * message.length) / nominal


@dataclass
class _Schedule:
    message: Any
    bus: str
    rate_hz: float
    credit: float = 0.0
    page: int = 0
    bounds: dict[str, tuple[float, float]] | None = None  # per signal, filled on first use


def _signal_bounds(sig: Any) -> tuple[float, float]:
    """The declared [minimum, maximum], else what the signal's bits can hold after scale and offset."""
    if sig.minimum is not None and sig.maximum is not None:
        return float(sig.minimum), float(sig.maximum)
    raw_lo, raw_hi = (-(2 ** (sig.length - 1)), 2 ** (sig.length - 1) - 1) if sig.is_signed else (0, 2**sig.length - 1)
    ends = sorted((raw_lo * sig.scale + sig.offset, raw_hi * sig.scale + sig.offset))
    return ends[0], ends[1]


def _within_range(item: _Schedule, values: dict[str, Any]) -> dict[str, Any]:
    """Values clamped to each signal's [minimum, maximum]: a model running past a bound must not stop the car."""
    if item.bounds is None:
        item.bounds = {sig.name: _signal_bounds(sig) for sig in item.message.signals}
    return {
        name: min(max(value, item.bounds[name][0]), item.bounds[name][1])
        if name in item.bounds and isinstance(value, int | float) and not isinstance(value, bool)
        else value
        for name, value in values.items()
    }


def schedules(db: Any, options: SimulatorOptions) -> list[_Schedule]:
    buses = {bus.name: bus for bus in options.buses}
    result = []
    for message in db.messages:
        bus_name = BUS_OF_SENDER.get(message.senders[0] if message.senders else "", "powertrain")
        if bus_name not in buses:
            continue
        cycle = message.cycle_time or 100
        result.append(_Schedule(message, bus_name, 1000.0 / cycle * options.rate_scale))
    if options.bus_load is not None:
        for name, bus in buses.items():
            mine = [s for s in result if s.bus == name]
            load = sum(s.rate_hz / options.rate_scale * _frame_seconds(s.message, bus) for s in mine)
            factor = options.bus_load / load if load else 1.0
            for s in mine:
                s.rate_hz = s.rate_hz / options.rate_scale * factor
    return result


def simulate(
    db: Any, options: SimulatorOptions, shutdown: Shutdown | None = None, tick_s: float = 0.01
) -> Iterator[tuple[float, str, Any, bytes]]:
    """(timestamp, bus, message, data) for every frame, in time order within each tick."""
    model = VehicleModel(seed=options.seed)
    plan = schedules(db, options)
    start_wall = time.time() if options.realtime or options.start_time is None else options.start_time
    start_mono = time.monotonic()
    encoded: dict[tuple[str, int], bytes] = {}
    sim_t = 0.0
    while not (shutdown is not None and shutdown.is_set()):
        if options.duration_s and sim_t >= options.duration_s:
            return
        model.step(tick_s)
        values = model.signals()
        encoded.clear()
        due: list[tuple[float, int, _Schedule]] = []
        for order, item in enumerate(plan):
            item.credit += item.rate_hz * tick_s
            count = int(item.credit + 1e-9)  # 10 x 0.1 is 0.9999999999999999
            item.credit -= count
            for k in range(count):
                due.append((sim_t + tick_s * (k + 0.5) / count, order, item))
        due.sort(key=lambda entry: (entry[0], entry[1]))
        for offset, _, item in due:
            name = item.message.name
            pages = MUX_PAGES.get(name)
            page = item.page % pages if pages else 0
            item.page += 1
            data = encoded.get((name, page))
            if data is None:
                signals = model.mux_signals(name, page) if pages else values[name]
                data = encoded[(name, page)] = item.message.encode(_within_range(item, signals), strict=False)
            yield start_wall + offset, item.bus, item.message, data
        sim_t += tick_s
        if options.realtime:
            delay = start_mono + sim_t - time.monotonic()
            if delay > 0 and shutdown is not None:
                shutdown.wait(delay)
            elif delay > 0:
                time.sleep(delay)


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, VehicleSimulatorSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(VehicleSimulatorSettings, args)
    with Shutdown() as shutdown:
        return run_simulator(settings, shutdown)


def run_simulator(settings: VehicleSimulatorSettings, shutdown: Shutdown) -> int:
    with configure_logging(settings.log, "simulate-vehicle"):
        return _simulate(settings, shutdown)


def _simulate(settings: VehicleSimulatorSettings, shutdown: Shutdown) -> int:
    import can
    import cantools

    from telestack.can_gateway.sources import open_bus

    options = settings.vehicle_simulator
    log = get_logger("simulate-vehicle")
    if not options.send and options.record is None:
        raise ConfigError("vehicle_simulator.send is false and no vehicle_simulator.record file: nothing to do")
    try:
        db = cantools.database.load_file(str(options.database))
    except Exception as exc:
        raise ConfigError(f"vehicle_simulator.database {options.database}: {exc}") from exc
    buses = {bus.name: open_bus(bus) for bus in options.buses} if options.send else {}
    channels = {bus.name: bus.name for bus in options.buses}
    writer = can.Logger(str(options.record)) if options.record is not None else None
    rates: dict[str, float] = {}
    for item in schedules(db, options):
        rates[item.bus] = rates.get(item.bus, 0) + item.rate_hz
    log.info("simulating", vehicle=options.vehicle, frames_per_s={k: round(v) for k, v in rates.items()})
    sent = 0
    try:
        for ts, bus_name, message, data in simulate(db, options, shutdown):
            frame = can.Message(
                timestamp=ts,
                arbitration_id=message.frame_id,
                is_extended_id=message.is_extended_frame,
                is_fd=message.is_fd,
                bitrate_switch=message.is_fd,
                data=data,
                channel=channels[bus_name],
            )
            bus = buses.get(bus_name)
            if bus is not None:
                try:
                    bus.send(frame)
                except can.CanError as exc:
                    log.warning("send failed", bus=bus_name, error=str(exc))
            if writer is not None:
                writer.on_message_received(frame)
            sent += 1
    finally:
        if writer is not None:
            writer.stop()
        for bus in buses.values():
            bus.shutdown()
        log.info("stopped", frames=sent)
    return 0
