"""images/influxdb/entrypoint.sh: the local InfluxDB image's first-start setup, run natively with the same influxd and
`influx` CLI the image holds (as tests/stack/test_mosquitto.py runs Mosquitto's entrypoint).

Stop 28's CI: one test worker's InfluxDB container ended at once with `Error: unknown command "telestack" for
"setup"`. Its random password began with a hyphen, and `influx setup --password -x...` reads that as a flag. Users'
passwords and tokens may begin with one too: the entrypoint must take any value.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from telestack.native.servers import free_port, run_script
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with `influxd` and `influx` (built and cached by `make setup`): /usr/local/bin in the image."""
    bin_dir = tmp_path_factory.mktemp("influx-bin")
    for name, script in (("influxd", "install-influxdb.sh"), ("influx", "install-influx-cli.sh")):
        (bin_dir / name).symlink_to(run_script(script))
    return bin_dir


@contextlib.contextmanager
def _first_start(tmp_path: Path, binaries: Path, *, password: str, token: str) -> Iterator[str]:
    port = free_port()
    data = tmp_path / "data"
    env = {
        **os.environ,
        "PATH": f"{binaries}:{os.environ.get('PATH', '')}",
        # The image's ENV, moved into the test's directory.
        "INFLUXD_BOLT_PATH": str(data / "influxd.bolt"),
        "INFLUXD_ENGINE_PATH": str(data / "engine"),
        "INFLUXD_SQLITE_PATH": str(data / "influxd.sqlite"),
        "INFLUX_CONFIGS_PATH": str(tmp_path / "influx-configs"),
        "INFLUXDB_SETUP_PORT": str(free_port()),
        "DOCKER_INFLUXDB_INIT_MODE": "setup",
        "DOCKER_INFLUXDB_INIT_USERNAME": "telestack-admin",
        "DOCKER_INFLUXDB_INIT_PASSWORD": password,
        "DOCKER_INFLUXDB_INIT_ORG": "telestack",
        "DOCKER_INFLUXDB_INIT_BUCKET": "telemetry",
        "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": token,
    }
    data.mkdir()
    log_path = tmp_path / "influxdb.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            # The entrypoint passes its arguments to the server it starts last: here, a free port instead of 8086.
            ["bash", str(ROOT / "images/influxdb/entrypoint.sh"), f"--http-bind-address=127.0.0.1:{port}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, f"the entrypoint ended ({process.returncode}): {log_path.read_text()}"
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout_s=120, interval_s=0.2, what="InfluxDB set up by the image's entrypoint")
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("password", "token"),
    [("-starts-with-a-hyphen", "--token-with-two"), ("plain-Password_1", "plain-token")],
    ids=["hyphen-first", "plain"],
)
def test_setup_takes_any_password_and_token(tmp_path: Path, binaries: Path, password: str, token: str) -> None:
    with _first_start(tmp_path, binaries, password=password, token=token) as url:
        buckets = httpx.get(f"{url}/api/v2/buckets", params={"name": "telemetry"},
                            headers={"Authorization": f"Token {token}"}, timeout=10)  # fmt: skip
        assert buckets.status_code == 200, buckets.text
        assert [b["name"] for b in buckets.json()["buckets"]] == ["telemetry"]
        signin = httpx.post(f"{url}/api/v2/signin", auth=("telestack-admin", password), timeout=10)
        assert signin.status_code == 204, signin.text
        wrong = httpx.post(f"{url}/api/v2/signin", auth=("telestack-admin", password + "x"), timeout=10)
        assert wrong.status_code == 401
