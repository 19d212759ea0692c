"""``telestack native``: run Kafka, Mosquitto and InfluxDB as local processes, for machines without Docker.

telestack native install      # build/download once into ~/.cache/telestack (InfluxDB: 5-10 min cold), and
                              # the tools tests and benchmarks run beside them (Telegraf,
                              # InfluxDB's line-protocol parser as a test oracle)
telestack native up           # start them in the background; prints where they listen
telestack native env          # TELESTACK_* variables for services, e.g. eval "$(telestack native env)"
telestack native status
telestack native down
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from pathlib import Path

from telestack.core.errors import ServerError
from telestack.core.ports import SERVER_PORTS
from telestack.core.settings import env_name
from telestack.native.endpoints import Endpoints
from telestack.native.servers import free_port, report
from telestack.native.stack import NativeStack, default_run_dir, stop_run_dir

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__
    parser.add_argument("action", choices=["install", "up", "down", "status", "env"], help="what to do")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="data, logs and endpoints.json of the servers (default: $TELESTACK_NATIVE_DIR or ./.native)",
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(run_dir: Path) -> dict[str, int]:
    """The ports of the previous run of this directory, else the standard ones when free."""
    ports: dict[str, int] = {}
    endpoints_path = run_dir / "endpoints.json"
    if endpoints_path.exists():
        previous = Endpoints.load(endpoints_path)
        ports["kafka"] = int(previous.kafka.bootstrap_servers.rsplit(":", 1)[1])
        ports["mqtt"] = previous.mqtt.port
        if previous.mqtt.device_port:
            ports["mqtt_devices"] = previous.mqtt.device_port
        ports["influx"] = int(previous.influx.url.rsplit(":", 1)[1])
    for name, standard in SERVER_PORTS.items():
        if name not in ports:
            ports[name] = standard if _port_free(standard) else free_port()
    return ports


def _running(run_dir: Path) -> bool:
    import json

    pids_path = run_dir / "pids.json"
    if not pids_path.exists():
        return False
    return any(_alive(pid) for pid in json.loads(pids_path.read_text()).values())


def run(args: argparse.Namespace) -> int:
    run_dir: Path = (args.run_dir or default_run_dir()).resolve()
    if args.action == "install":
        NativeStack(run_dir).install(tools=True)
        return 0
    if args.action == "up":
        if _running(run_dir):
            report(f"already running from {run_dir}; 'telestack native down' stops them")
        else:
            NativeStack(run_dir, ports=_ports(run_dir)).start()
        _print_endpoints(Endpoints.load(run_dir / "endpoints.json"))
        return 0
    if args.action == "down":
        stopped = stop_run_dir(run_dir)
        report(f"stopped {', '.join(stopped)}" if stopped else f"nothing running from {run_dir}")
        return 0
    endpoints_path = run_dir / "endpoints.json"
    if not endpoints_path.exists():
        raise ServerError(f"no servers were started from {run_dir}; run 'telestack native up' first")
    endpoints = Endpoints.load(endpoints_path)
    if args.action == "env":
        sys.stdout.write(_env_script(run_dir, endpoints))
        return 0
    state = "running" if _running(run_dir) else "stopped"
    sys.stdout.write(f"{state} ({run_dir})\n")
    _print_endpoints(endpoints)
    return 0 if state == "running" else 3


def _env_script(run_dir: Path, endpoints: Endpoints) -> str:
    """``export`` lines for a shell: the servers, and what the run directory provisioned (a demo's).

    The InfluxDB operator token is exported only where nothing scoped exists yet: after ``influx-init`` (the demo
    runs it) the write token takes its place. A demo's actuator token store is exported too, so that
    ``telestack tokens create`` makes tokens the running actuator knows.
    """
    env = endpoints.env()
    notes: list[str] = []
    scoped = run_dir / "influx-tokens.env"
    if scoped.exists():
        tokens = dict(
            line.split("=", 1) for line in scoped.read_text().splitlines() if "=" in line and not line.startswith("#")
        )
        env[env_name("influx", "token")] = tokens["INFLUX_WRITER_TOKEN"].strip()
        notes.append(f"# {env_name('influx', 'token')}: the scoped write token of {scoped}")
    else:
        notes.append(f"# {env_name('influx', 'token')}: the InfluxDB operator token (all access; no scoped tokens yet)")
    actuator_tokens = run_dir / "actuator" / "tokens.json"
    if actuator_tokens.exists():
        env[env_name("actuator", "tokens_file")] = str(actuator_tokens)
        notes.append(f"# {env_name('actuator', 'tokens_file')}: the token store of the running actuator")
    return "".join(f"{note}\n" for note in notes) + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def _print_endpoints(endpoints: Endpoints) -> None:
    sys.stdout.write(
        f"kafka      {endpoints.kafka.bootstrap_servers}  (Kafka {endpoints.kafka.version})\n"
        f"mqtt       {endpoints.mqtt.host}:{endpoints.mqtt.port}  user {endpoints.mqtt.username}"
        f"  ({endpoints.mqtt.version}); devices on :{endpoints.mqtt.device_port} (client id = login)\n"
        f"influxdb   {endpoints.influx.url}  org {endpoints.influx.org}  ({endpoints.influx.version})\n"
        "credentials: endpoints.json in the run directory; 'telestack native env' prints them as variables\n"
    )
