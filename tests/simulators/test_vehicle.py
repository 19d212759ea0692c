"""The vehicle simulator: a plausible car, frames the DBC decodes, rates up to saturated buses."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import can
import cantools
import pytest
from cantools.database import Database

from telestack.can_gateway.settings import BusSettings
from telestack.core.runtime import Shutdown
from telestack.simulators.vehicle import (
    SimulatorOptions,
    VehicleModel,
    VehicleSimulatorSettings,
    _frame_seconds,
    run_simulator,
    schedules,
    simulate,
)

ROOT = Path(__file__).resolve().parents[2]
DBC = ROOT / "config" / "dbc" / "telestack_vehicle.dbc"


@pytest.fixture(scope="module")
def db() -> Database:
    database = cantools.database.load_file(str(DBC))
    assert isinstance(database, Database)
    return database


def test_driving_model_is_plausible_over_two_minutes() -> None:
    car = VehicleModel(seed=3)
    speeds, rpms, gears, lateral, soc, temps = [], [], set(), [], [], []
    for _ in range(12_000):  # 120 s at 10 ms
        car.step(0.01)
        signals = car.signals()
        speeds.append(signals["VehicleSpeed"]["VehicleSpeed"])
        rpms.append(signals["EngineStatus"]["EngineSpeed"])
        gears.add(signals["EngineStatus"]["Gear"])
        lateral.append(abs(signals["Imu"]["AccelY"]))
        soc.append(car.soc)
        temps.append(max(car.module_temps))
    assert min(speeds) >= 0 and 90 < max(speeds) < 135  # km/h: a racing car on a twisty track
    assert min(rpms) >= 1500 and max(rpms) <= 13_500
    assert {"FIRST", "SECOND", "THIRD"} <= gears
    assert 0.8 < max(lateral) < 1.8  # g in corners, bounded by grip
    assert soc[-1] < soc[0] and temps[-1] > temps[0]  # the pack discharges and warms up
    cells = [car.cell_voltage(n) for n in range(144)]
    assert 3.0 < min(cells) < max(cells) < 4.3


def test_every_frame_decodes_and_multiplexed_pages_cycle(db: Database) -> None:
    options = SimulatorOptions(realtime=False, duration_s=2, start_time=1_700_000_000, send=False)
    frames = list(simulate(db, options))
    per_bus = Counter(bus for _, bus, _, _ in frames)
    assert per_bus == {"powertrain": 600, "chassis": 420, "battery": 420}  # the DBC cycle times, for 2 s
    groups, pages = Counter(), Counter()
    timestamps = [ts for ts, *_ in frames]
    assert timestamps == sorted(timestamps) and timestamps[0] >= 1_700_000_000
    for _, _, message, data in frames:
        decoded = db.decode_message(message.frame_id, data, force_extended_id=message.is_extended_frame)
        if message.name == "BmsCellVoltages":
            groups[decoded["CellGroup"]] += 1
            assert all(3.0 < v < 4.3 for k, v in decoded.items() if k.startswith("Cell") and k != "CellGroup")
        if message.name == "BmsTemperatures":
            pages[(decoded["TempPage"], decoded.get("TempModule"))] += 1
    assert set(groups) == set(range(6)) and max(groups.values()) - min(groups.values()) <= 1
    assert len(pages) == 7


def test_bus_load_one_saturates_three_one_megabit_buses(db: Database) -> None:
    options = SimulatorOptions(bus_load=1.0, send=False)
    plan = schedules(db, options)
    buses = {bus.name: bus for bus in options.buses}
    for name, bus in buses.items():
        load = sum(s.rate_hz * _frame_seconds(s.message, bus) for s in plan if s.bus == name)
        assert load == pytest.approx(1.0)
    total = sum(s.rate_hz for s in plan)
    assert 20_000 < total < 40_000  # frames/s across the three buses
    frames = list(simulate(db, options.model_copy(update={"realtime": False, "duration_s": 0.5, "start_time": 0})))
    assert len(frames) == pytest.approx(total * 0.5, rel=0.02)


def test_simulator_sends_on_virtual_buses(tmp_path: Path, db: Database) -> None:
    buses = [
        BusSettings(name="powertrain", interface="virtual", channel="sim-test-pt"),
        BusSettings(name="chassis", interface="virtual", channel="sim-test-ch"),
        BusSettings(name="battery", interface="virtual", channel="sim-test-bat", fd=True),
    ]
    record = tmp_path / "sim.log"
    settings = VehicleSimulatorSettings(
        vehicle_simulator=SimulatorOptions(buses=buses, duration_s=0.5, rate_scale=2.0, record=record)
    )
    listener = can.Bus(interface="virtual", channel="sim-test-bat")
    received: list[can.Message] = []
    done = threading.Event()

    def listen() -> None:  # until the simulator is done and every frame it sent has been read
        while (message := listener.recv(0.1)) is not None or not done.is_set():
            if message is not None:
                received.append(message)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        assert run_simulator(settings, Shutdown()) == 0
    finally:
        done.set()
        thread.join(5)
        listener.shutdown()
    assert len(received) == pytest.approx(2 * 0.5 * 210, abs=3)  # battery bus: 210 frames/s, doubled
    assert all(m.is_fd for m in received if m.arbitration_id == 0x18F00200)
    recorded = list(can.LogReader(str(record)))
    assert len(recorded) == pytest.approx(2 * 0.5 * 720, abs=6)


@pytest.mark.slow  # ten simulated minutes of every frame
def test_a_long_run_never_overflows_a_signal(db: Database) -> None:
    # Regression: after ~67 s a value ran past its signal's bits and cantools raised OverflowError, killing the car.
    options = SimulatorOptions(realtime=False, duration_s=600, start_time=1_700_000_000, send=False)
    frames = 0
    for _, _, message, data in simulate(db, options, tick_s=0.05):
        frames += 1
        if frames % 97 == 0:  # decoding every frame would make this test slow; a sample proves the encoding
            db.decode_message(message.frame_id, data, force_extended_id=message.is_extended_frame)
    assert frames > 400_000
