"""/ui: the page people use. In real headless Chromium (Debian's package, installed by `make setup`),
and over plain HTTP for the refusals."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from telestack.actuator.tokens import TokenStore
from telestack.actuator.ui import COOKIE_NAME, csrf_token
from telestack.simulators.fermenters import Fermenter
from telestack.simulators.mqtt_device import DeviceFleet
from telestack.simulators.smart_plug import SmartPlug
from tests.actuator.chromium import Browser, Page, ensure_chromium
from tests.actuator.conftest import ActuatorFactory, FakeDevice, RunningActuator


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


@pytest.fixture
def phone_token(actuator: RunningActuator) -> str:
    """What a brewer's phone would hold: read everything, switch plugs and set the fermenter."""
    store = TokenStore(actuator.settings.actuator.tokens_file)
    return store.create("phone", ["read", "command:plug-*", f"command:{actuator.devices.fermenter}"])[0]


def _cell(device: str, key: str) -> str:
    return f'document.querySelector(\'[data-device="{device}"] dd[data-key="{key}"]\')'


def test_sign_in_click_the_plug_and_see_it_switch(
    actuator: RunningActuator,
    simulate: Callable[..., DeviceFleet],
    page: Page,
    phone_token: str,
    tmp_path: Path,
) -> None:
    """With the project's simulated smart plug and fermenter answering."""
    rng = random.Random(3)
    plug = SmartPlug(actuator.devices.plug, rng, relay=False, prefix=f"test/{actuator.devices.plug}")
    fermenter = Fermenter(actuator.devices.fermenter, rng)
    fleet = simulate(plug, fermenter)
    page.goto(f"{actuator.url}/ui")
    page.type_into("#token", phone_token)
    page.click("form[action$='/ui/login'] button")
    page.wait_for(f"document.querySelector('[data-device=\"{plug.device_id}\"]') !== null")
    assert page.evaluate("document.querySelectorAll('section.device').length") == 5
    # The lamp is visible (read) but has no buttons (not command:lamp-*).
    assert page.evaluate(f"document.querySelector('[data-device=\"{actuator.devices.lamp}\"] button')") is None

    plug_form = f"[data-device=\"{plug.device_id}\"] button[value='on']"
    page.click(plug_form)
    assert page.wait_for(f"{_cell(plug.device_id, 'relay')}?.textContent") == "on"
    assert "→ acked" in page.evaluate("document.querySelector('.flash').textContent")
    assert plug.relay is True

    page.click(f"[data-device=\"{plug.device_id}\"] button[value='toggle']")
    page.wait_for(f"{_cell(plug.device_id, 'relay')}?.textContent === 'off'")
    assert plug.relay is False
    assert fleet.commands == 2

    page.type_into(f"#{fermenter.device_id}-set_setpoint-celsius", "18.5")
    page.click(f"[data-device=\"{fermenter.device_id}\"] button[value='set_setpoint']")
    assert page.wait_for(f"{_cell(fermenter.device_id, 'setpoint')}?.textContent") == "18.5"
    assert fermenter.setpoint == 18.5

    # Phone-sized and readable: no horizontal scrolling, buttons big enough for a thumb.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    height = page.evaluate(f"document.querySelector({json.dumps(plug_form)}).getBoundingClientRect().height")
    assert height >= 40
    page.screenshot(tmp_path / "ui.png")


def _signed_in(actuator: RunningActuator, token: str) -> httpx.Client:
    client = actuator.client(follow_redirects=False)
    response = client.post("/ui/login", data={"token": token})
    assert response.status_code == 303 and response.headers["location"] == "/ui"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
    return client


def test_ui_refusals(actuator: RunningActuator, fake_device: Callable[..., FakeDevice], phone_token: str) -> None:
    anonymous = actuator.client()
    page = anonymous.get("/ui")
    assert page.status_code == 200 and "Sign in" in page.text
    assert "script-src 'nonce-" in page.headers["Content-Security-Policy"]
    wrong = anonymous.post("/ui/login", data={"token": "tst_nope_nope"})
    assert wrong.status_code == 401 and "unknown, revoked or expired" in wrong.text

    client = _signed_in(actuator, phone_token)
    csrf = csrf_token(phone_token)
    fermenter_url = f"/ui/devices/{actuator.devices.fermenter}/commands"
    no_csrf = client.post(fermenter_url, data={"command": "set_setpoint", "arg.celsius": "12"})
    assert no_csrf.status_code == 403 and "stale" in no_csrf.text
    too_hot = client.post(fermenter_url, data={"csrf": csrf, "command": "set_setpoint", "arg.celsius": "45"})
    assert too_hot.status_code == 422 and "celsius=45 is above the maximum 30 °C" in too_hot.text
    not_a_number = client.post(fermenter_url, data={"csrf": csrf, "command": "set_setpoint", "arg.celsius": "hot"})
    assert not_a_number.status_code == 422 and "celsius must be a number" in not_a_number.text
    lamp = client.post(f"/ui/devices/{actuator.devices.lamp}/commands", data={"csrf": csrf, "command": "on"})
    assert lamp.status_code == 403 and "may not command" in lamp.text

    plug = fake_device(actuator.devices.plug)
    form = {"csrf": csrf, "command": "on", "key": "form-1"}
    done = client.post(f"/ui/devices/{actuator.devices.plug}/commands", data=form)
    assert done.status_code == 303
    again = client.post(f"/ui/devices/{actuator.devices.plug}/commands", data=form)  # a double submit
    assert again.headers["location"] == done.headers["location"]
    assert len(plug.commands()) == 1
    command_id = re.search(r"command=([0-9a-f]{32})", done.headers["location"]).group(1)  # type: ignore[union-attr]
    shown = client.get(done.headers["location"])
    assert f"{actuator.devices.plug}: on → acked" in shown.text
    assert actuator.service.tracker.get(command_id).actor == "phone"  # type: ignore[union-attr]

    out = client.post("/ui/logout", data={"csrf": csrf})
    assert out.status_code == 303 and f'{COOKIE_NAME}=""' in out.headers["set-cookie"]
    # The JSON API does not take the cookie: only bearer tokens.
    with actuator.client(cookies={COOKIE_NAME: phone_token}) as with_cookie:
        assert with_cookie.get("/v1/devices").status_code == 401
    assert json.loads(anonymous.get("/v1/devices").text)["detail"].startswith("a bearer token is required")


def test_behind_a_tls_proxy_the_session_cookie_is_secure(actuators: ActuatorFactory) -> None:
    trusting = actuators.start(proxy_headers=True, forwarded_allow_ips="*")
    client = trusting.client(follow_redirects=False)
    login = client.post("/ui/login", data={"token": trusting.tokens.reader}, headers={"X-Forwarded-Proto": "https"})
    assert login.status_code == 303 and "Secure" in login.headers["set-cookie"]
    plain = client.post("/ui/login", data={"token": trusting.tokens.reader})
    assert "Secure" not in plain.headers["set-cookie"]
    # Without proxy_headers, a client cannot claim HTTPS with a header.
    direct = actuators.start().client(follow_redirects=False)
    spoofed = direct.post("/ui/login", data={"token": trusting.tokens.reader}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in spoofed.headers["set-cookie"]
