"""The buttons in the dashboards: Grafana visualization actions checked against Grafana's schema models (the
grafana-foundation-sdk package: dashboard v1 for the dashboards, dashboard v2beta1 for actions, whose JSON is
the same in v1's fieldConfig), and against what the actuator's button token may do.

What the browser then sends is tested in tests/actuator/test_grafana_button.py (headless Chromium, real actuator,
real Mosquitto, simulated plug).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_v1
from grafana_foundation_sdk.models import dashboardv2beta1 as dashboard_v2

from telestack.actuator.settings import ActuatorOptions
from telestack.actuator.tokens import Principal, check_scope
from tests.stack.flux import DASHBOARDS_DIR, load_dashboards, panels
from tests.stack.grafana_actions import TOKEN_PLACEHOLDER, build_request, dashboard_actions

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = load_dashboards()
ACTIONS = list(dashboard_actions())
# The scopes README tells users to give the button token: exactly what the buttons send, nothing more.
BUTTON_SCOPES = ["command:plug-1/on,off,toggle", "command:f*/set_setpoint"]
# Where the v1 models of the SDK are open or behind Grafana 12 (checked otherwise or free-form).
NOT_IN_V1_MODEL = {
    ".panels[].fieldConfig.defaults.actions",  # actions: v2beta1's Action model, below
    ".templating.list[].definition",  # the query text Grafana's editor shows; free-form
    ".annotations.list[].target.query",  # a data source's query: free-form
    ".annotations.list[].target.refId",
}


def _encoded(model: Any) -> Any:
    return json.loads(json.dumps(model, cls=JSONEncoder))


def _lost(original: Any, decoded: Any, path: str = "") -> list[str]:
    """Paths of `original` that decoding through the model dropped or changed (list indexes as [])."""
    if isinstance(original, dict):
        if not isinstance(decoded, dict):
            return [path]
        lost = []
        for key, value in original.items():
            lost += _lost(value, decoded[key], f"{path}.{key}") if key in decoded else [f"{path}.{key}"]
        return lost
    if isinstance(original, list):
        if not isinstance(decoded, list) or len(original) != len(decoded):
            return [path]
        return [p for a, b in zip(original, decoded, strict=True) for p in _lost(a, b, f"{path}[]")]
    return [] if original == decoded else [path]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_dashboard_decodes_through_the_grafana_v1_model_without_loss(name: str) -> None:
    dashboard = DASHBOARDS[name]
    decoded = _encoded(dashboard_v1.Dashboard.from_json(dashboard))
    assert set(_lost(dashboard, decoded)) <= NOT_IN_V1_MODEL


def test_the_buttons_are_where_the_seeds_want_them() -> None:
    titles = {(name, action["title"]) for name, _panel, action in ACTIONS}
    assert titles == {
        ("devices", "On"),
        ("devices", "Off"),
        ("devices", "Toggle"),
        ("fermentation", "Set setpoint"),
    }


@pytest.mark.parametrize(("name", "panel", "action"), ACTIONS, ids=[f"{n}:{a['title']}" for n, _p, a in ACTIONS])
def test_each_action_matches_grafanas_action_schema(name: str, panel: dict[str, Any], action: dict[str, Any]) -> None:
    assert panel["type"] in {"table", "timeseries", "state-timeline", "status-history", "xychart", "canvas"}, (
        "a visualization that shows actions in Grafana 12"
    )
    decoded = dashboard_v2.Action.from_json(action)
    assert _encoded(decoded) == action, "a key the schema does not know, or a value of the wrong shape"
    assert dashboard_v2.ActionType(action["type"]) is dashboard_v2.ActionType.FETCH
    fetch = action["fetch"]
    dashboard_v2.HttpRequestMethod(fetch["method"])
    assert action["title"] and fetch["url"]
    for pairs in (fetch.get("headers", []), fetch.get("queryParams", [])):
        assert all(len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in pairs)
    for variable in action.get("variables", []):
        assert variable.get("type") == dashboard_v2.ActionVariableType


@pytest.mark.parametrize(("name", "panel", "action"), ACTIONS, ids=[f"{n}:{a['title']}" for n, _p, a in ACTIONS])
def test_each_action_uses_only_known_variables_and_carries_no_token(
    name: str, panel: dict[str, Any], action: dict[str, Any]
) -> None:
    defined = {v["name"] for v in DASHBOARDS[name]["templating"]["list"]}
    keys = {v["key"] for v in action.get("variables", [])}
    text = json.dumps(action["fetch"])
    for braced, bare in re.findall(r"\$\{([\w.]+)\}|\$(\w+)", text):
        used = braced or bare
        assert used in defined or used in keys or used.startswith("__data.fields."), f"undefined ${used}"
    # The dashboard JSON is readable by every viewer and committed: a placeholder, rendered at deployment.
    assert f"Bearer {TOKEN_PLACEHOLDER}" in text and "tst_" not in text


def test_the_button_token_scopes_cover_the_buttons_and_nothing_else() -> None:
    for scope in BUTTON_SCOPES:
        check_scope(scope)
    button = Principal("0", "grafana-buttons", frozenset(BUTTON_SCOPES))
    sent = set()
    for name, _panel, action in ACTIONS:
        variables = {"actuator_url": "http://actuator", "__data.fields.device": "f2" if name == "fermentation" else ""}
        request = build_request(action, inputs={"celsius": "18.5"}, variables=variables, token="t")
        device = re.fullmatch(r"http://actuator/v1/devices/([^/]+)/commands\?wait=(\d+)", request.url)
        assert device is not None, request.url
        assert int(device[2]) <= ActuatorOptions().max_wait_s, "the actuator refuses a longer ?wait= (422)"
        command = json.loads(request.body or "{}")["command"]
        assert button.can_command(device[1], command), f"{name}: the token cannot {command} {device[1]}"
        sent.add((device[1], command))
    assert sent == {("plug-1", "on"), ("plug-1", "off"), ("plug-1", "toggle"), ("f2", "set_setpoint")}
    assert not button.can_read() and not button.can_command("plug-1", "set_setpoint")
    assert not button.can_command("plug-2", "on") and not button.can_command("lamp-1", "toggle")


def test_panels_with_buttons_still_query_the_provisioned_datasource() -> None:
    for name, panel, _action in ACTIONS:
        assert panel in panels(DASHBOARDS[name]) and panel["datasource"] == {"type": "influxdb", "uid": "influxdb"}


def test_grafanas_start_renders_the_button_token_into_the_dashboards(tmp_path: Path) -> None:
    """docker-compose.yml's Grafana entrypoint, run with /bin/sh on copies (its paths pointed at tmp_path)."""
    grafana = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    source, rendered = "/usr/share/telestack/dashboards", "/etc/grafana/provisioning/dashboards/telestack"
    assert f"./grafana/provisioning/dashboards/telestack:{source}:ro" in grafana["volumes"]
    assert f"{rendered}:mode=1777" in grafana["tmpfs"]
    (tmp_path / "src").mkdir()
    (tmp_path / "out").mkdir()
    for path in DASHBOARDS_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / "src" / path.name)
    (tmp_path / "read.token").write_text("influx-read")
    script = (
        grafana["entrypoint"][2]
        .replace("$$", "$")
        .replace(source, str(tmp_path / "src"))
        .replace(rendered, str(tmp_path / "out"))
        .replace("/var/lib/telestack/influx/read.token", str(tmp_path / "read.token"))
        .replace("exec /run.sh", "exec true")
    )
    token = "tst_0a1b2c3d_Zm9v-YmFy_YmF6"  # the alphabet of real tokens: hex id, URL-safe base64 secret
    subprocess.run(["/bin/sh", "-c", script], check=True, env={"PATH": "/usr/bin:/bin", "ACTUATOR_BUTTON_TOKEN": token})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{name}.json" for name in DASHBOARDS)
    for name, dashboard in DASHBOARDS.items():
        text = (tmp_path / "out" / f"{name}.json").read_text()
        assert TOKEN_PLACEHOLDER not in text
        expected = json.dumps(dashboard).replace(TOKEN_PLACEHOLDER, token)
        assert json.loads(text) == json.loads(expected)
    assert f"Bearer {token}" in (tmp_path / "out" / "devices.json").read_text()
