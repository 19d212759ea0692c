"""`make compose-check`: the stack as its users run it, `docker compose up`, on a real engine, checked as a user would.

    python -m tests.compose_check [--images local|official] [--no-scale] [--keep]

From a fresh `.env` (secrets generated, free host ports), in a compose project of its own:
1. builds the telestack image (time printed: cold when the image was not there, warm otherwise);
2. `docker compose up -d --wait` with the demo profile: every service but Grafana, which no registry here offers;
3. checks: every service healthy, every one-shot job exited 0; data from every simulator in InfluxDB; an actuator
   token made with `docker compose exec`, a command to plug-1 acked through the published port; anonymous MQTT
   refused on the published port; no traceback in `docker compose logs`;
4. under sequence-numbered MQTT load, kill -9 of every telestack service's main process at once, then of Kafka's:
   every sequence number in InfluxDB exactly once, every service healthy again;
5. the 3-broker variant (`docker-compose.scale.yml`) up, one broker killed under load: nothing lost;
6. `docker compose down -v`.
Progress goes to stderr; the last stdout line is one JSON object of figures. Exit status 0 only if all passed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from telestack.core.mqtt import device_password
from telestack.native.images import write_env
from telestack.native.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"grafana"}  # no image registry here offers Grafana, and its source is off limits
SERVICES_KILLED = ("mqtt-bridge", "influx-writer", "alerting", "actuator", "kafka-lag", "can-gateway")
SIMULATED = {  # measurement → (field, tag, values): what each simulator writes (telestack demo check's list)
    "EngineStatus": ("EngineSpeed", "vehicle", {"ved-01"}),
    "fermenter": ("temperature", "device", {"f1", "f2", "f3"}),
    "teleinfo": ("T1_PAPP", "device", {"compteur-1"}),
    "plug": ("power", "device", {"plug-1"}),
}


def say(message: str) -> None:
    sys.stderr.write(f"[compose-check] {message}\n")
    sys.stderr.flush()


class CheckFailed(Exception):
    pass


# Run inside a service's container: print its /healthz body (the JSON that names each check), 200 or 503.
HEALTHZ_BODY = (
    "import sys, urllib.request as u, urllib.error as e\n"
    "try:\n    print(u.urlopen(sys.argv[1], timeout=4).read().decode())\n"
    "except e.HTTPError as x:\n    print(x.read().decode())"
)


class Project:
    """One compose project: its env file, its compose files, and the docker commands on it."""

    def __init__(self, name: str, env_file: Path, files: list[str]) -> None:
        self.name = name
        self.env_file = env_file
        self.files = files
        lines = env_file.read_text().splitlines()
        self.env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        # A proxy's CA certificates for pip in the image build (multi-line PEM: through the environment).
        pem = "".join(path.read_text() for path in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")))
        self.shell_env = {**os.environ, "EXTRA_CA_CERTS": pem}

    def compose(self, *args: str, check: bool = True, timeout: float = 900, capture: bool = True) -> str:
        command = ["docker", "compose", "-p", self.name, "--env-file", str(self.env_file), "--profile", "demo"]
        for file in self.files:
            command += ["-f", file]
        proc = subprocess.run(
            [*command, *args],
            cwd=ROOT,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
            env=self.shell_env,
        )
        if check and proc.returncode != 0:
            raise CheckFailed(f"docker compose {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc.stdout or ""

    def up_and_wait(self, services: list[str], timeout_s: int) -> None:
        """`docker compose up -d --wait`; if a service does not become healthy, the error says what it says."""
        try:
            self.compose("up", "-d", "--wait", "--wait-timeout", str(timeout_s), *services, timeout=timeout_s + 300)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}\nwhat the services that are not healthy say:\n{self.why_not_healthy()}") from exc

    def why_not_healthy(self) -> str:
        """For each container neither healthy nor done: its /healthz body, its last probes, its log's tail."""
        parts = []
        for container in self.containers():
            state, status, service = container.get("State"), container.get("Status", ""), container["Service"]
            if container.get("Health") == "healthy" or (state == "exited" and "Exited (0)" in status):
                continue
            parts.append(f"--- {service}: {status}")
            try:
                info = self.inspect(service)
                test = " ".join(info["Config"].get("Healthcheck", {}).get("Test") or [])
                url = re.search(r"http://127\.0\.0\.1:\d+/healthz", test)
                if url and state == "running":
                    body = self.compose("exec", "-T", service, "python", "-c", HEALTHZ_BODY, url.group(0), check=False)
                    parts.append(f"{url.group(0)}: {body.strip()[:1500]}")
                for probe in (info["State"].get("Health") or {}).get("Log", [])[-2:]:
                    last = (probe["Output"].strip().splitlines() or [""])[-1]
                    parts.append(f"probe, exit {probe['ExitCode']}: {last[-300:]}")
            except (CheckFailed, subprocess.SubprocessError, KeyError, IndexError) as exc:
                parts.append(f"(not inspected: {exc})")
            parts.append(self.compose("logs", "--no-color", "--tail", "30", service, check=False, timeout=60).rstrip())
        return "\n".join(parts) or "(every container is healthy or done now)"

    def services(self) -> list[str]:
        return [name for name in self.compose("config", "--services").split() if name not in SKIPPED]

    def containers(self) -> list[dict[str, Any]]:
        out = self.compose("ps", "-a", "--format", "json")
        rows = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
        if len(rows) == 1 and isinstance(rows[0], list):
            rows = rows[0]
        return rows

    def container_id(self, service: str) -> str:
        return self.compose("ps", "-q", service).split()[0]

    def inspect(self, service: str) -> dict[str, Any]:
        out = subprocess.run(
            ["docker", "inspect", self.container_id(service)], capture_output=True, text=True, check=True
        ).stdout
        return dict(json.loads(out)[0])

    def health(self, service: str) -> str:
        state = self.inspect(service)["State"]
        return str(state.get("Health", {}).get("Status") or state.get("Status"))

    def influx_query(self, flux: str) -> list[dict[str, str]]:
        out = self.compose(
            "exec",
            "-T",
            "influxdb",
            "influx",
            "query",
            "--raw",
            "--org",
            self.env["INFLUXDB_ORG"],
            "--token",
            self.env["INFLUXDB_ADMIN_TOKEN"],
            flux,
            timeout=60,
        )
        rows = [row for row in csv.reader(io.StringIO(out)) if row and not row[0].startswith("#")]
        if not rows:
            return []
        header = rows[0]
        return [dict(zip(header, row, strict=False)) for row in rows[1:] if row != header]


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except CheckFailed as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval_s)
    raise CheckFailed(f"{what}: not within {timeout_s:.0f} s (last: {last!r})")


# The load's device login: one more simulated device (its password derived from MQTT_SIMULATOR_PASSWORD), so it
# neither shares a login (and client id) with a running simulator nor needs a devices.passwd in the repository.
LOAD_DEVICE = "load-check"


def _load_password(project: Project) -> str:
    return device_password(project.env["MQTT_SIMULATOR_PASSWORD"], LOAD_DEVICE)


class SequenceLoad:
    """A device publishing `check,run=<id> seq=<n>i <ts>` over MQTT (QoS 1) at a steady rate, in a thread.

    It logs in as a simulated device of its own (`LOAD_DEVICE`, added to MQTT_SIMULATED_DEVICES) and publishes on
    its own line-protocol topic (`telegraf/<user>/check`); the timestamp is set here, at the source, so a
    redelivery is the same point.
    """

    def __init__(self, host: str, port: int, username: str, password: str, rate: float = 40) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.rate = rate
        self.sent = 0
        self._stop = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{username}-check-{self.run}")
        self._client.username_pw_set(username, password)
        self._client.max_queued_messages_set(0)
        self._client.connect(host, port)
        self._client.loop_start()
        self._topic = f"telegraf/{username}/check"
        self._thread = threading.Thread(target=self._publish, name="sequence-load", daemon=True)

    def start(self) -> SequenceLoad:
        self._thread.start()
        return self

    def _publish(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            line = f"check,run={self.run} seq={self.sent}i {time.time_ns()}"
            self._client.publish(self._topic, line, qos=1)
            self.sent += 1
            next_at += 1 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        time.sleep(1)  # the last PUBACKs
        self._client.disconnect()
        self._client.loop_stop()
        return self.sent

    def outcome(self, project: Project, timeout_s: float = 300) -> dict[str, int]:
        """Wait (while rows keep arriving) until every sequence number is in InfluxDB; lost and duplicated."""
        flux = (
            f'from(bucket: "{project.env["INFLUXDB_BUCKET"]}") |> range(start: -2h) '
            f'|> filter(fn: (r) => r._measurement == "check" and r.run == "{self.run}" and r._field == "seq") '
            '|> keep(columns: ["_value"])'
        )
        deadline = time.monotonic() + timeout_s
        seen: list[int] = []
        while time.monotonic() < deadline:
            seen = [int(row["_value"]) for row in project.influx_query(flux)]
            if len(set(seen)) >= self.sent:
                break
            time.sleep(2)
        return {
            "sent": self.sent,
            "stored": len(seen),
            "lost": self.sent - len(set(seen)),
            "duplicated": len(seen) - len(set(seen)),
        }


def kill_main_processes(project: Project, services: list[str]) -> dict[str, int]:
    """kill -9 of each container's main process, as a crash would (the engine restarts it: restart policy), all
    within a moment: the containers are inspected first. Returns each one's restart count before the kill."""
    before = {service: project.inspect(service) for service in services}
    for info in before.values():
        os.kill(int(info["State"]["Pid"]), signal.SIGKILL)
    return {service: int(info["RestartCount"]) for service, info in before.items()}


def wait_healthy_again(
    project: Project, service: str, restarts_before: int, killed_at: float, timeout_s: float = 180
) -> float:
    """Seconds from `killed_at` (monotonic) until `service` was restarted and healthy again."""

    def back() -> bool:
        info = project.inspect(service)
        health = info["State"].get("Health", {}).get("Status")
        return info["RestartCount"] > restarts_before and info["State"]["Running"] and health == "healthy"

    wait_for(back, max(1.0, killed_at + timeout_s - time.monotonic()), f"{service} healthy again after kill -9", 0.5)
    return time.monotonic() - killed_at


@contextmanager
def project_up(name: str, env_file: Path, files: list[str], keep: bool) -> Iterator[Project]:
    project = Project(name, env_file, files)
    try:
        yield project
    finally:
        if keep:
            say(f"--keep: project {name} left running (docker compose -p {name} down -v)")
        else:
            project.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
            say(f"{name}: docker compose down -v")


def check_no_traceback(project: Project) -> None:
    lines = project.compose("logs", "--no-color", timeout=120).splitlines()
    found = []
    for index, line in enumerate(lines):
        if "Traceback (most recent call last)" in line:
            service = line.split("|", 1)[0].strip()
            # the exception: the first line of that service's log after the frames
            following = [ln.split("| ", 1)[-1] for ln in lines[index + 1 : index + 80] if ln.startswith(service)]
            exception = next((ln.strip() for ln in following if ln.strip() and not ln.startswith(" ")), "?")
            found.append(f"{service}: {exception}")
    if found:
        raise CheckFailed(f"{len(found)} traceback(s) in docker compose logs: {'; '.join(found)}")


def check_simulators(project: Project) -> None:
    bucket = project.env["INFLUXDB_BUCKET"]
    for measurement, (field, tag, values) in SIMULATED.items():
        flux = (
            f'from(bucket: "{bucket}") |> range(start: -15m) '
            f'|> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{field}") '
            f'|> last() |> keep(columns: ["{tag}"])'
        )

        def present(flux: str = flux, tag: str = tag, values: set[str] = values) -> bool:
            return values <= {row.get(tag, "") for row in project.influx_query(flux)}

        wait_for(present, 60, f"{measurement}.{field} for {sorted(values)} in InfluxDB", interval_s=2)


def check_command(project: Project) -> float:
    token = (
        project.compose(
            "exec", "-T", "actuator", "telestack", "tokens", "create", "--name", "compose-check", "--scope", "admin"
        )
        .strip()
        .splitlines()[-1]
    )
    url = f"http://127.0.0.1:{project.env['ACTUATOR_PORT']}"
    started = time.monotonic()
    reply = httpx.post(
        f"{url}/v1/devices/plug-1/commands",
        params={"wait": 20},
        json={"command": "toggle"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if reply.status_code >= 300 or reply.json().get("state") != "acked":
        raise CheckFailed(
            f"command to plug-1 through port {project.env['ACTUATOR_PORT']}: {reply.status_code} {reply.text}"
        )
    return time.monotonic() - started


def check_anonymous_refused(project: Project) -> None:
    result: dict[str, Any] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"anonymous-{uuid.uuid4().hex[:6]}")
    client.on_connect = lambda c, u, f, rc, p=None: (result.update(rc=rc), done.set())
    client.connect("127.0.0.1", int(project.env["MQTT_PORT"]))
    client.loop_start()
    done.wait(15)
    client.loop_stop()
    if not done.is_set() or not result["rc"].is_failure:
        raise CheckFailed(f"an anonymous MQTT client was not refused on port {project.env['MQTT_PORT']}: {result}")


def faults_under_load(project: Project, rounds: list[list[str]], figures: dict[str, Any]) -> None:
    """Under sequence-numbered MQTT load, each round kills -9 its services' main processes at once, as a host's
    crash or an OOM sweep would, and waits until every one of them is healthy again; then the next round."""
    load = SequenceLoad("127.0.0.1", int(project.env["MQTT_PORT"]), LOAD_DEVICE, _load_password(project)).start()
    recovery: dict[str, float] = {}
    try:
        time.sleep(5)
        for services in rounds:
            restarts = kill_main_processes(project, services)
            killed_at = time.monotonic()
            say(f"kill -9 of the main process of {', '.join(services)}, at once")
            time.sleep(1)
            for service in services:
                recovery[service] = round(wait_healthy_again(project, service, restarts[service], killed_at), 1)
            say("healthy again after " + ", ".join(f"{service} {recovery[service]} s" for service in services))
        time.sleep(5)
    finally:
        load.stop()
    outcome = load.outcome(project)
    say(f"sequence-numbered load through the kills: {outcome}")
    figures["recovery_s"] = {**figures.get("recovery_s", {}), **recovery}
    figures["lost"] = figures.get("lost", 0) + outcome["lost"]
    figures["duplicated"] = figures.get("duplicated", 0) + outcome["duplicated"]
    figures.setdefault("messages", 0)
    figures["messages"] += outcome["sent"]


def main_stack(args: argparse.Namespace, env_file: Path, figures: dict[str, Any]) -> None:
    name = f"telestack-check-{uuid.uuid4().hex[:6]}"
    with project_up(name, env_file, ["docker-compose.yml"], args.keep) as project:
        services = project.services()
        started = time.monotonic()
        project.compose("build", timeout=1800)
        figures["image_build_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        project.compose("build", timeout=600)  # again, nothing changed: what a warm `up` pays
        figures["image_build_warm_s"] = round(time.monotonic() - started, 1)
        say(f"telestack image built in {figures['image_build_s']} s, rebuilt warm in {figures['image_build_warm_s']} s")

        started = time.monotonic()
        project.up_and_wait(services, timeout_s=300)
        figures["up_to_healthy_s"] = round(time.monotonic() - started, 1)
        say(f"up → every service healthy in {figures['up_to_healthy_s']} s (without {', '.join(sorted(SKIPPED))})")

        containers = project.containers()
        long_running = [c for c in containers if c["Service"] not in ("kafka-topics", "influx-init")]
        healthy = [c for c in long_running if "healthy" in c.get("Status", "") and "unhealthy" not in c["Status"]]
        figures["services_total"] = len(long_running)
        figures["services_healthy"] = len(healthy)
        if len(healthy) != len(long_running):
            raise CheckFailed(f"not healthy: {[(c['Service'], c['Status']) for c in long_running if c not in healthy]}")
        for job in ("kafka-topics", "influx-init"):
            state = [c for c in containers if c["Service"] == job]
            if not state or state[0].get("ExitCode") != 0:
                raise CheckFailed(f"one-shot job {job} did not exit 0: {state}")

        started = time.monotonic()
        check_simulators(project)
        figures["first_data_s"] = round(time.monotonic() - started, 1)
        say(f"data from every simulator in InfluxDB {figures['first_data_s']} s after healthy")
        figures["command_acked_s"] = round(check_command(project), 2)
        say(f"command to plug-1 acked through the published port in {figures['command_acked_s']} s")
        check_anonymous_refused(project)
        say("anonymous MQTT refused on the published port")
        check_no_traceback(project)
        say("no traceback in docker compose logs")

        faults_under_load(project, [[s for s in SERVICES_KILLED if s in services], ["kafka"]], figures)
        check_no_traceback(project)


def scale_stack(args: argparse.Namespace, env_file: Path, figures: dict[str, Any]) -> None:
    name = f"telestack-scale-{uuid.uuid4().hex[:6]}"
    with project_up(name, env_file, ["docker-compose.yml", "docker-compose.scale.yml"], args.keep) as project:
        started = time.monotonic()
        project.up_and_wait(project.services(), timeout_s=420)
        figures["scale_up_to_healthy_s"] = round(time.monotonic() - started, 1)
        say(f"3-broker variant healthy in {figures['scale_up_to_healthy_s']} s")
        load = SequenceLoad("127.0.0.1", int(project.env["MQTT_PORT"]), LOAD_DEVICE, _load_password(project)).start()
        try:
            time.sleep(5)
            project.compose("kill", "-s", "KILL", "kafka-2")  # a broker gone for good: the others carry on
            say("kill -9 kafka-2 (stays down)")
            time.sleep(20)
        finally:
            load.stop()
        outcome = load.outcome(project)
        say(f"sequence-numbered load through a broker's loss: {outcome}")
        figures["scale_lost"] = outcome["lost"]
        figures["scale_duplicated"] = outcome["duplicated"]


def _stop(signum: int, frame: object) -> None:
    say(f"stopped by signal {signum}: bringing the projects down")
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compose_check", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--images",
        choices=["local", "official"],
        default="official",
        help="local: the telestack-local/* stand-ins of `make images-local`",
    )
    parser.add_argument("--no-scale", action="store_true", help="skip the 3-broker variant")
    parser.add_argument("--keep", action="store_true", help="leave the projects running (to look around)")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM (a CI runner, `kill`) or Ctrl-C, the projects' `docker compose down -v` (in `finally`)
    # must still run.
    signal.signal(signal.SIGTERM, _stop)
    figures: dict[str, Any] = {"passed": False}
    with tempfile.TemporaryDirectory(prefix="telestack-compose-check-") as tmp:
        env_file = Path(tmp) / ".env"
        extra = {
            "MQTT_PORT": str(free_port()),
            "MQTT_TLS_PORT": str(free_port()),
            "ACTUATOR_PORT": str(free_port()),
            "GRAFANA_PORT": str(free_port()),
            "COMPOSE_PROFILES": "demo",
            "MQTT_SIMULATOR_PASSWORD": secrets.token_hex(24),
            "MQTT_SIMULATED_DEVICES": f'"f1 f2 f3 compteur-1 plug-1 {LOAD_DEVICE}"',  # quoted: spaces in .env
        }
        write_env(ROOT / ".env.example", env_file, args.images, extra)
        started = time.monotonic()
        try:
            main_stack(args, env_file, figures)
            if not args.no_scale:
                scale_stack(args, env_file, figures)
            problems = [k for k in ("lost", "duplicated", "scale_lost") if figures.get(k)]
            figures["passed"] = not problems
            if problems:
                say(f"FAILED: {', '.join(f'{k}={figures[k]}' for k in problems)}")
        except CheckFailed as exc:
            say(f"FAILED: {exc}")
            figures["error"] = str(exc).splitlines()[0]
        figures["total_s"] = round(time.monotonic() - started, 1)
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
