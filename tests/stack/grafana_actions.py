"""The HTTP request a Grafana visualization action (type ``fetch``) sends, built from the dashboard JSON the way
Grafana 12 builds it (public/app/features/actions/utils.ts and core/utils/fetch.ts, read for this):

- the action's own variables (``$celsius``, what the viewer types) replace ``$<key>`` first, then dashboard
  variables (``${actuator_url}``) and data variables (``${__data.fields.device}``, the clicked row);
- ``queryParams`` are appended to the URL; ``headers`` are sent as given, plus ``X-Grafana-Action: 1``, an
  ``Accept`` header and, for POST/PUT/PATCH, ``Content-Type: application/json`` if none was given;
- the body is sent for every method but GET, ``{}`` when the action has none; credentials ``same-origin``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tests.stack.flux import load_dashboards, panels

TOKEN_PLACEHOLDER = "__ACTUATOR_BUTTON_TOKEN__"
_TEMPLATE = re.compile(r"\$\{([\w.]+)\}|\$(\w+)")


@dataclass(frozen=True)
class ActionRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None

    def fetch_init(self) -> dict[str, Any]:
        """The `fetch(url, init)` init Grafana's backend service passes to the browser."""
        return {"method": self.method, "headers": self.headers, "body": self.body, "credentials": "same-origin"}


def dashboard_actions() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard file, panel, action) for every action of every provisioned dashboard."""
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            for action in panel.get("fieldConfig", {}).get("defaults", {}).get("actions", []):
                yield name, panel, action


def find_action(dashboard: str, title: str) -> dict[str, Any]:
    found = [a for name, _p, a in dashboard_actions() if name == dashboard and a["title"] == title]
    assert len(found) == 1, f"{dashboard}: {len(found)} actions titled {title!r}"
    return found[0]


def _interpolate(text: str, action: Mapping[str, Any], inputs: Mapping[str, str], variables: Mapping[str, str]) -> str:
    keys = {v["key"] for v in action.get("variables", [])}
    text = re.sub(r"\$\w+", lambda m: inputs[m[0][1:]] if m[0][1:] in keys and m[0][1:] in inputs else m[0], text)

    def template(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in variables:
            raise AssertionError(f"{text!r}: ${name} is neither a dashboard variable nor given")
        return variables[name]

    return _TEMPLATE.sub(template, text)


def build_request(
    action: Mapping[str, Any], *, inputs: Mapping[str, str], variables: Mapping[str, str], token: str
) -> ActionRequest:
    """What the browser sends when `action` is clicked: `variables` holds dashboard and data variables
    (``actuator_url``, ``__data.fields.device``), `inputs` what the viewer typed, `token` the provisioned token."""
    assert action["type"] == "fetch"
    fetch = action["fetch"]
    url = _interpolate(fetch["url"], action, inputs, variables)
    params = [
        (_interpolate(k, action, inputs, variables), _interpolate(v, action, inputs, variables))
        for k, v in fetch.get("queryParams", [])
    ]
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params)
    headers = {}
    for name, value in fetch.get("headers", []):
        headers[_interpolate(name, action, inputs, variables)] = _interpolate(
            value.replace(TOKEN_PLACEHOLDER, token), action, inputs, variables
        )
    headers["X-Grafana-Action"] = "1"
    lower = {k.lower() for k in headers}
    if fetch["method"] in ("POST", "PUT", "PATCH") and "content-type" not in lower:
        headers["Content-Type"] = "application/json"
    if "accept" not in lower:
        headers["Accept"] = "application/json, text/plain, */*"
    body = None if fetch["method"] == "GET" else _interpolate(fetch.get("body") or "{}", action, inputs, variables)
    return ActionRequest(fetch["method"], url, headers, body)
