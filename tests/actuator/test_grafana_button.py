"""The Grafana buttons, end to end in headless Chromium: a page served from another origin (Grafana's, here a
local port) sends exactly the request the dashboard's action is configured to send (read from the provisioned
JSON, built as Grafana builds it: tests/stack/grafana_actions.py), through the browser's CORS preflight, to a
real actuator, over real Mosquitto, to the project's simulated plug and fermenter; and they switch.

Grafana itself cannot run here; what it adds to the request (X-Grafana-Action, Accept, credentials) is included.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from telestack.actuator.settings import ActuatorOptions
from telestack.actuator.tokens import TokenStore
from telestack.simulators.fermenters import Fermenter
from telestack.simulators.mqtt_device import DeviceFleet
from telestack.simulators.smart_plug import SmartPlug
from tests.actuator.chromium import Browser, Page, ensure_chromium
from tests.actuator.conftest import ActuatorFactory, registry_yaml
from tests.polling import wait_until
from tests.stack.grafana_actions import ActionRequest, build_request, find_action
from tests.stack.test_dashboard_actions import BUTTON_SCOPES

PAGE = """<!doctype html><html><body>
<button id="action">{title}</button>
<script>
const request = {request};
document.getElementById("action").addEventListener("click", async () => {{
  try {{
    const response = await fetch(request.url, request.init);
    window.result = {{status: response.status, body: await response.text()}};
  }} catch (error) {{
    window.result = {{error: String(error)}};
  }}
}});
</script></body></html>"""


@dataclass
class GrafanaOrigin:
    """A page server standing in for Grafana's origin: it serves the button for the request it is given."""

    origin: str
    title: str = ""
    request: ActionRequest | None = None
    served: list[str] = field(default_factory=list)

    def page(self) -> bytes:
        assert self.request is not None
        payload = json.dumps({"url": self.request.url, "init": self.request.fetch_init()})
        return PAGE.format(title=self.title, request=payload).encode()


@pytest.fixture
def grafana_origin() -> Iterator[GrafanaOrigin]:
    origin: GrafanaOrigin

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = origin.page()
            origin.served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # "localhost" while the actuator is reached at 127.0.0.1: two origins, as Grafana and the actuator are.
    origin = GrafanaOrigin(f"http://localhost:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield origin
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    return ensure_chromium()


@pytest.fixture
def page(chromium_binary: str, tmp_path: Path) -> Iterator[Page]:
    browser = Browser(chromium_binary, tmp_path / "chromium-profile")
    try:
        yield browser.new_page()
    finally:
        browser.close()


def click(page: Page, grafana: GrafanaOrigin, title: str, request: ActionRequest) -> dict[str, Any]:
    grafana.title, grafana.request = title, request
    page.goto(f"{grafana.origin}/d/telestack?button={quote(title)}")
    page.evaluate("window.result = undefined")
    page.click("#action")
    result: dict[str, Any] = page.wait_for("window.result", timeout_s=20)
    return result


def test_the_dashboard_buttons_switch_the_plug_and_set_the_fermenter(
    actuators: ActuatorFactory,
    simulate: Callable[..., DeviceFleet],
    grafana_origin: GrafanaOrigin,
    page: Page,
    unique: str,
) -> None:
    # The dashboard's plug is plug-1 (its token may command nothing else); f1-<unique> matches the token's f*.
    actuators.devices = replace(actuators.devices, plug="plug-1")
    (actuators.tmp_path / "devices.yaml").write_text(yaml.safe_dump(registry_yaml(actuators.devices)))
    # max_wait_s as shipped (the tests' default is shorter): the setpoint button waits up to 15 s for the ack.
    actuator = actuators.start(cors_origins=[grafana_origin.origin], max_wait_s=ActuatorOptions().max_wait_s)
    token = TokenStore(actuators.tmp_path / "tokens.json").create("grafana-buttons", BUTTON_SCOPES)[0]
    rng = random.Random(14)
    plug = SmartPlug("plug-1", rng, relay=False, prefix=f"test-{unique}/plugs")
    fermenter = Fermenter(actuators.devices.fermenter, rng, setpoint=18.0, prefix=f"test-{unique}/fermenters")
    fleet = simulate(plug, fermenter)
    variables = {"actuator_url": actuator.url}

    for title, relay in (("On", True), ("Toggle", False), ("On", True), ("Off", False)):
        request = build_request(find_action("devices", title), inputs={}, variables=variables, token=token)
        result = click(page, grafana_origin, title, request)
        assert result.get("status") == 202, result
        status = json.loads(result["body"])
        assert (
            status["state"] == "acked" and status["command"] == title.lower() and status["actor"] == "grafana-buttons"
        )
        assert plug.relay is relay

    action = find_action("fermentation", "Set setpoint")
    request = build_request(
        action,
        inputs={"celsius": "12.5"},
        variables={**variables, "__data.fields.device": fermenter.device_id},
        token=token,
    )
    result = click(page, grafana_origin, "Set setpoint", request)
    assert result.get("status") == 202, result
    assert json.loads(result["body"])["args"] == {"celsius": 12.5}
    wait_until(lambda: fermenter.setpoint == 12.5, timeout_s=10, what="the fermenter's new setpoint")
    assert fleet.commands == 5

    # The same token cannot do more than the buttons: a lamp (not plug-1) is refused, in the browser too.
    lamp_url = request.url.replace(fermenter.device_id, actuators.devices.lamp)
    lamp = replace(request, url=lamp_url, body='{"command": "on"}')
    refused = click(page, grafana_origin, "not a button", lamp)
    assert refused.get("status") == 403, refused
    assert plug.relay is False and fleet.commands == 5
