"""The whole stack without Docker: native Kafka, Mosquitto and InfluxDB, every telestack service and simulator.

`DemoStack.start` does what ``docker compose --profile demo up`` does: start the servers, create the Kafka
topics (`telestack.kafka_admin.topics`), provision InfluxDB (``telestack influx-init``: buckets and scoped
tokens), start the services (``telestack downsample`` among them) with their own settings, wait until each
answers ``/healthz``, start the simulators, scrape every ``/metrics`` into InfluxDB (what Telegraf does in
compose) and send one command through the actuator (fermenter f2 to 12 °C, so an alert fires and resolves
while you watch). `DemoStack.stop` stops them in reverse order. `DemoStack.missing_data` is what ``telestack
demo check`` asks InfluxDB.

A run directory holds the servers' data, each process's log (``logs/``), ``demo.json`` (ports, pids, the
supervisor's pid for ``telestack demo down``) and the credentials (``endpoints.json``, mode 0600).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from telestack.core.errors import TelestackError
from telestack.core.files import write_atomically
from telestack.core.ports import SERVER_PORTS, SERVICE_PORTS
from telestack.core.settings import KafkaSettings, env_name
from telestack.core.topics import TopicLayout, create_topics
from telestack.demo.processes import ManagedProcess, RestartPolicy, telestack_argv, wait_all_stopped
from telestack.demo.scrape import MetricsScraper
from telestack.native.endpoints import Endpoints
from telestack.native.servers import free_port
from telestack.native.stack import NativeStack

__all__ = ["SERVICE_PORTS", "SIMULATORS", "DemoError", "DemoInfo", "DemoStack", "SimulatorData", "project_root"]

# Each service's settings section: where its /healthz port goes (TELESTACK_<SECTION>__HTTP__PORT).
_SECTIONS = {
    "can-gateway": "can_gateway",
    "mqtt-bridge": "mqtt_bridge",
    "influx-writer": "influx_writer",
    "alerting": "alerting",
    "kafka-lag": "kafka_lag",
    "downsampler": "downsampler",
    "actuator": "actuator",
}
DEMO_COMMAND = ("f2", "set_setpoint", {"celsius": 12.0})
VEHICLE = "ved-01"  # the simulated car: the `vehicle` tag of its CAN data


class DemoError(TelestackError):
    """The demo could not start (a server or service failed) or found data missing."""


@dataclass(frozen=True, slots=True)
class SimulatorData:
    """What one simulator's data looks like in InfluxDB, for ``telestack demo check``."""

    simulator: str
    measurement: str
    field: str
    tag: str
    values: tuple[str, ...]  # every one of these tag values must have data


SIMULATORS = (
    SimulatorData("vehicle", "EngineStatus", "EngineSpeed", "vehicle", (VEHICLE,)),
    SimulatorData("vehicle", "BmsStatus", "PackVoltage", "bus", ("battery",)),
    SimulatorData("fermenters", "fermenter", "temperature", "device", ("f1", "f2", "f3")),
    SimulatorData("energy-meter", "teleinfo", "T1_PAPP", "device", ("compteur-1",)),
    SimulatorData("smart-plug", "plug", "power", "device", ("plug-1",)),
)


@dataclass
class DemoInfo:
    """Where everything is, for people (printed by ``telestack demo up``) and tests."""

    run_dir: Path
    endpoints: Endpoints
    ports: dict[str, int]
    read_token: str
    writer_token: str
    actuator_token: str
    timings: dict[str, float] = field(default_factory=dict)
    command_outcome: str = ""

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


def project_root(start: Path | None = None) -> Path:
    """The telestack checkout (the folder holding config/telestack.yaml), from `start` or the working directory."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "config" / "telestack.yaml").is_file():
            return candidate
    raise DemoError(f"no config/telestack.yaml in {here} or above: run the demo from the telestack checkout")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as servers bind: connections of a previous run in TIME_WAIT do not make the port busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_ports(previous: dict[str, int], *, standard: bool = True) -> dict[str, int]:
    """The previous run's ports when free, else the standard ones when free (if `standard`), else any free port."""
    ports: dict[str, int] = {}
    for name, usual in [*SERVER_PORTS.items(), *SERVICE_PORTS.items()]:
        for candidate in (previous.get(name), usual if standard else None):
            if candidate and candidate not in ports.values() and _port_free(candidate):
                ports[name] = candidate
                break
        else:
            port = free_port()
            while port in ports.values():
                port = free_port()
            ports[name] = port
    return ports


def _base_env() -> dict[str, str]:
    """The environment children inherit: ours without TELESTACK_* (the demo sets those itself)."""
    keep = {"TELESTACK_CACHE"}
    return {k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_") or k in keep}


def _read_tokens(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _bus_channels(group: int) -> Callable[[list[dict[str, object]]], list[dict[str, object]]]:
    """Moves the buses' multicast groups 239.74.163.N to 239.74.<group>.N, so two demos (or tests) never mix."""

    def move(buses: list[dict[str, object]]) -> list[dict[str, object]]:
        moved = []
        for bus in buses:
            channel = str(bus.get("channel") or "")
            if bus.get("interface") == "udp_multicast" and channel.count(".") == 3:
                bus = {**bus, "channel": f"239.74.{group}.{channel.rsplit('.', 1)[1]}"}
            moved.append(bus)
        return moved

    return move


@dataclass(frozen=True)
class Restarted:
    """A server or process the supervisor started again, and what it left behind."""

    name: str
    returncode: int | None
    log_path: Path
    log_tail: str
    restarts: int  # since it was last healthy


class DemoStack:
    """Servers, services and simulators of the demo, under `run_dir`."""

    def __init__(
        self,
        run_dir: Path,
        root: Path | None = None,
        *,
        scrape_interval_s: float = 5.0,
        standard_ports: bool = True,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """`service_env`: extra environment of a service by name (e.g. ``{"downsampler": {...}}``), over the demo's."""
        self.run_dir = run_dir.resolve()
        self.service_env = {name: dict(env) for name, env in (service_env or {}).items()}
        self.root = project_root(root)
        self.scrape_interval_s = scrape_interval_s
        self.state_path = self.run_dir / "demo.json"
        previous = json.loads(self.state_path.read_text()).get("ports", {}) if self.state_path.exists() else {}
        self.ports = _choose_ports(previous, standard=standard_ports)
        self.native = NativeStack(
            self.run_dir,
            ports={k: self.ports[k] for k in SERVER_PORTS},
        )
        self.services: list[ManagedProcess] = []
        self.simulators: list[ManagedProcess] = []
        self.scraper: MetricsScraper | None = None
        self.info: DemoInfo | None = None
        self.restart_policy = RestartPolicy()
        self._downsampler_token = ""

    # --- start ----------------------------------------------------------------------------------------------

    def start(self, report: Callable[[str], None] = lambda _: None) -> DemoInfo:
        """Start everything; on any failure, stop what was started and raise `DemoError` with the logs."""
        timings: dict[str, float] = {}
        started = time.monotonic()
        try:
            report("starting Kafka, Mosquitto and InfluxDB (native)")
            endpoints = self.native.start()
            timings["servers_s"] = time.monotonic() - started
            report("creating Kafka topics and provisioning InfluxDB (buckets, tokens)")
            kafka = KafkaSettings(bootstrap_servers=endpoints.kafka.bootstrap_servers)
            create_topics(kafka, TopicLayout())
            tokens = self._influx_init(endpoints)
            self._downsampler_token = tokens["INFLUX_DOWNSAMPLER_TOKEN"]
            actuator_token = self._actuator_token()
            self.info = DemoInfo(
                run_dir=self.run_dir,
                endpoints=endpoints,
                ports=self.ports,
                read_token=tokens["INFLUX_READ_TOKEN"],
                writer_token=tokens["INFLUX_WRITER_TOKEN"],
                actuator_token=actuator_token,
                timings=timings,
            )
            timings["provisioned_s"] = time.monotonic() - started
            report("starting the services")
            self._start_services(self.info)
            self._save_state()
            self._wait_healthy(self.services)
            timings["services_s"] = time.monotonic() - started
            report("starting the simulators")
            self._start_simulators(self.info)
            self._save_state()
            timings["simulators_started_at"] = time.time()
            self.scraper = MetricsScraper(
                {name: f"{self.info.url(name)}/metrics" for name in SERVICE_PORTS},
                influx_url=endpoints.influx.url,
                org=endpoints.influx.org,
                bucket=endpoints.influx.bucket,
                token=self.info.writer_token,
                interval_s=self.scrape_interval_s,
            ).start()
            self.info.command_outcome = self._demo_command(self.info)
            timings["ready_s"] = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self.info

    def _influx_init(self, endpoints: Endpoints) -> dict[str, str]:
        tokens_file = self.run_dir / "influx-tokens.env"
        proc = subprocess.run(
            telestack_argv("influx-init", "--tokens-file", str(tokens_file)),
            env={**_base_env(), **endpoints.env(), env_name("log", "format"): "console"},
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DemoError(f"telestack influx-init failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return _read_tokens(tokens_file)

    def _actuator_token(self) -> str:
        """A fresh token store with one admin token for this run (printed by ``telestack demo up``)."""
        from telestack.actuator.tokens import TokenStore

        path = self.run_dir / "actuator" / "tokens.json"
        path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        token, _ = TokenStore(path).create("demo", ["admin"])
        return token

    def _env(self, info: DemoInfo, *, influx: bool = False) -> dict[str, str]:
        env = {**_base_env(), **info.endpoints.env(), env_name("log", "format"): "json"}
        if influx:
            env[env_name("influx", "token")] = info.writer_token  # scoped: writes the telemetry buckets only
        else:
            env.pop(env_name("influx", "token"))
        return env

    def _service(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        section = _SECTIONS.get(name)
        if section is not None:
            env[env_name(section, "http", "port")] = str(self.ports[name])
        env.update(self.service_env.get(name, {}))
        return ManagedProcess(name, argv, env=env, cwd=self.root, log_path=self.run_dir / "logs" / f"{name}.log")

    def _start_services(self, info: DemoInfo) -> None:
        from telestack.can_gateway.settings import GatewayOptions

        move = _bus_channels(random.randint(164, 254))
        self._move_buses = move
        gateway_buses = move([bus.model_dump(mode="json") for bus in GatewayOptions().buses])
        specs = [
            ("kafka-lag", {env_name("kafka_lag", "interval_s"): "5"}, False),
            ("influx-writer", {}, True),
            ("alerting", {env_name("alerting", "rules"): "config/alerts-demo.yaml"}, True),
            ("mqtt-bridge", {}, False),
            (
                "actuator",
                {env_name("actuator", "tokens_file"): str(self.run_dir / "actuator" / "tokens.json")},
                False,
            ),
            (
                "can-gateway",
                {
                    env_name("can_gateway", "vehicle"): VEHICLE,
                    env_name("can_gateway", "buses"): json.dumps(gateway_buses),
                    env_name("can_gateway", "spool", "directory"): str(self.run_dir / "can-gateway" / "spool"),
                },
                False,
            ),
        ]
        for name, extra, influx in specs:
            process = self._service(name, telestack_argv(name), {**self._env(info, influx=influx), **extra})
            process.start()
            self.services.append(process)
        # Raw → 1-minute aggregates, one window at a time, with its own token (reads raw, writes downsampled).
        env = {**self._env(info, influx=True), env_name("influx", "token"): self._downsampler_token}
        process = self._service("downsampler", telestack_argv("downsample"), env)
        process.start()
        self.services.append(process)

    def _start_simulators(self, info: DemoInfo) -> None:
        from telestack.simulators.vehicle import SimulatorOptions

        vehicle_buses = self._move_buses([bus.model_dump(mode="json") for bus in SimulatorOptions().buses])
        specs = [
            ("simulate-vehicle", ["vehicle"], {env_name("vehicle_simulator", "buses"): json.dumps(vehicle_buses)}),
            ("simulate-fermenters", ["fermenters", "--devices", "f1,f2,f3"], {}),
            ("simulate-energy-meter", ["energy-meter", "--devices", "compteur-1"], {}),
            ("simulate-smart-plug", ["smart-plug", "--devices", "plug-1"], {}),
        ]
        # Each simulated device logs in as itself on the devices' listener, as a real one would.
        as_devices = {
            env_name("mqtt", "port"): str(info.endpoints.mqtt.device_port),
            env_name("mqtt", "password"): info.endpoints.mqtt.device_secret,
        }
        for name, args, extra in specs:
            env = {**self._env(info), **extra, **({} if name == "simulate-vehicle" else as_devices)}
            process = self._service(name, telestack_argv("simulate", *args), env)
            process.start()
            self.simulators.append(process)

    def _wait_healthy(self, processes: list[ManagedProcess], timeout_s: float = 90) -> None:
        def wait(process: ManagedProcess) -> None:
            url = f"http://127.0.0.1:{self.ports[process.name]}/healthz"
            deadline = time.monotonic() + timeout_s
            last = "no answer"
            while time.monotonic() < deadline:
                if not process.alive():
                    raise DemoError(
                        f"{process.name} exited with status {process.returncode()} while starting; "
                        f"last lines of {process.log_path}:\n{process.log_tail()}"
                    )
                try:
                    response = httpx.get(url, timeout=2)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last = str(exc)
                time.sleep(0.3)
            raise DemoError(
                f"{process.name} not healthy after {timeout_s:.0f} s ({url}: {last}); "
                f"last lines of {process.log_path}:\n{process.log_tail()}"
            )

        with ThreadPoolExecutor(len(processes)) as pool:
            for future in [pool.submit(wait, process) for process in processes]:
                future.result()

    def _demo_command(self, info: DemoInfo, timeout_s: float = 30) -> str:
        """Sends DEMO_COMMAND through the actuator until the simulated fermenter acks it; returns the outcome."""
        device, command, args = DEMO_COMMAND
        url = f"{info.url('actuator')}/v1/devices/{device}/commands"
        headers = {"Authorization": f"Bearer {info.actuator_token}"}
        deadline = time.monotonic() + timeout_s
        outcome = "not sent: the fermenter simulator did not report"
        # Once its telemetry is in InfluxDB, the simulated fermenter is connected and listens for commands.
        while "fermenters" in self.missing_data() and time.monotonic() < deadline:
            time.sleep(0.5)
        while time.monotonic() < deadline:
            try:
                response = httpx.post(
                    url, params={"wait": 5}, json={"command": command, "args": args}, headers=headers, timeout=10
                )
            except httpx.HTTPError as exc:
                outcome = f"error: {exc}"
            else:
                body = response.json() if response.headers.get("content-type", "").startswith("application") else {}
                state = body.get("state", response.status_code)
                outcome = f"{device} {command} {args}: {state}"
                if state == "acked":
                    return outcome
            time.sleep(1)
        return outcome

    def _save_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "ports": self.ports,
            "processes": {p.name: p.pid for p in [*self.services, *self.simulators] if p.pid is not None},
        }
        write_atomically(self.state_path, json.dumps(state, indent=2) + "\n")  # read by `demo status` meanwhile

    # --- running --------------------------------------------------------------------------------------------

    def exited(self) -> list[ManagedProcess]:
        """Processes that stopped on their own."""
        return [p for p in [*self.services, *self.simulators] if p.process is not None and not p.alive()]

    def restart_exited(self) -> list[Restarted]:
        """Start again what stopped on its own, servers and processes alike, as `restart_policy` says when.

        Kafka, Mosquitto and InfluxDB are supervised like the services: a server that crashed (or was killed)
        is started on its data directory again, and ``pids.json`` is rewritten so ``demo down`` finds it.
        """
        restarted: list[Restarted] = []
        policy = self.restart_policy
        for server in self.native.servers:
            if server.process is None or server.process.poll() is None:
                continue
            policy.exited(server.name)
            if policy.due(server.name):
                returncode, tail = server.process.returncode, server.log_tail()
                server.start()
                policy.started(server.name)
                self.native.save_pids()
                restarted.append(
                    Restarted(server.name, returncode, server.log_path, tail, policy.restarts(server.name))
                )
        for process in self.exited():
            policy.exited(process.name)
            if not policy.due(process.name):
                continue
            process.previous_log_tail = process.log_tail()
            process.previous_returncode = process.returncode()
            process.start()
            policy.started(process.name)
            restarted.append(
                Restarted(
                    process.name,
                    process.previous_returncode,
                    process.log_path,
                    process.previous_log_tail,
                    policy.restarts(process.name),
                )
            )
        if restarted:
            self._save_state()
        return restarted

    def missing_data(self, since: str = "-10m") -> dict[str, list[str]]:
        """simulator → what InfluxDB does not hold yet (empty when every simulator's data is there)."""
        assert self.info is not None
        influx = self.info.endpoints.influx
        missing: dict[str, list[str]] = {}
        with httpx.Client(timeout=10, headers={"Authorization": f"Token {self.info.read_token}"}) as client:
            for expected in SIMULATORS:
                flux = (
                    f'from(bucket: "{influx.bucket}") |> range(start: {since})'
                    f' |> filter(fn: (r) => r._measurement == "{expected.measurement}"'
                    f' and r._field == "{expected.field}")'
                    f' |> keep(columns: ["{expected.tag}", "_value"]) |> group(columns: ["{expected.tag}"])'
                    " |> count()"
                )
                found = _query_column(client, influx.url, influx.org, flux, expected.tag)
                absent = [
                    f"{expected.measurement}.{expected.field} {expected.tag}={value}"
                    for value in expected.values
                    if value not in found
                ]
                if absent:
                    missing.setdefault(expected.simulator, []).extend(absent)
                else:
                    missing.setdefault(expected.simulator, [])
        return {name: items for name, items in missing.items() if items}

    # --- stop -----------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """The metrics scraper, the simulators, then the services (they drain), then the servers."""
        if self.scraper is not None:
            self.scraper.stop()
        wait_all_stopped(self.simulators, timeout_s=10)
        wait_all_stopped(list(reversed(self.services)), timeout_s=20)
        self.native.stop()
        self._forget_processes()

    def _forget_processes(self) -> None:
        """Keep the ports in demo.json (the next run reuses them), drop the pids."""
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            state.pop("supervisor_pid", None)
            state["processes"] = {}
            write_atomically(self.state_path, json.dumps(state, indent=2) + "\n")


def _query_column(client: httpx.Client, url: str, org: str, flux: str, column: str) -> dict[str, str]:
    """Runs `flux` (annotated CSV) and returns `column` → `_value` of each row."""
    import csv
    import io

    response = client.post(
        f"{url}/api/v2/query",
        params={"org": org},
        json={"query": flux, "dialect": {"annotations": [], "header": True}},
    )
    if response.status_code != 200:
        raise DemoError(f"InfluxDB query failed: {response.status_code} {response.text[:300]}")
    found: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(response.text)):
        if row.get(column):
            found[row[column]] = row.get("_value", "")
    return found
