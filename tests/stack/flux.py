"""Running dashboard queries the way Grafana does: variables interpolated, ``v.*`` given, annotated CSV parsed."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "grafana" / "provisioning" / "dashboards" / "telestack"


def load_dashboards() -> dict[str, dict[str, Any]]:
    """File name (without .json) → dashboard."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' children included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p.get("type") != "row"]


@dataclass
class FluxResult:
    columns: set[str] = field(default_factory=set)
    rows: list[dict[str, str]] = field(default_factory=list)

    def values(self, column: str) -> set[str]:
        return {row[column] for row in self.rows if row.get(column)}


def run_flux(client: httpx.Client, url: str, org: str, query: str) -> FluxResult:
    """Run `query`; raise AssertionError with InfluxDB's message when it fails."""
    response = client.post(
        f"{url}/api/v2/query",
        params={"org": org},
        json={"query": query, "dialect": {"header": True, "annotations": []}},
    )
    assert response.status_code == 200, f"query failed ({response.status_code}): {response.text}\n{query}"
    result = FluxResult()
    for block in re.split(r"\r?\n\r?\n", response.text.strip()):
        if not block.strip():
            continue
        reader = csv.reader(io.StringIO(block))
        header = next(reader)
        if "error" in header and "reference" in header:
            raise AssertionError(f"query failed: {block}\n{query}")
        result.columns.update(h for h in header if h and h not in ("result", "table"))
        for row in reader:
            result.rows.append(dict(zip(header, row, strict=False)))
    return result


def with_time_range(query: str, start: str = "-15m", window: str = "10s") -> str:
    """Gives the query Grafana's ``v`` record (after its imports, where Flux wants options)."""
    lines = query.splitlines()
    imports = [line for line in lines if line.startswith("import ")]
    rest = [line for line in lines if not line.startswith("import ")]
    option = f"option v = {{timeRangeStart: {start}, timeRangeStop: now(), windowPeriod: {window}}}"
    return "\n".join([*imports, option, *rest])


def interpolate(text: str, values: dict[str, list[str]]) -> str:
    """Grafana's ``${name}``, ``${name:json}`` and ``${name:regex}`` with the variables' current values."""

    def replace(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(2)
        if name not in values:
            raise AssertionError(f"variable ${{{name}}} is not defined by the dashboard")
        chosen = values[name]
        if fmt == "json":
            return json.dumps(chosen)
        if fmt == "regex":
            escaped = [re.escape(v) for v in chosen]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        assert fmt is None, f"unknown variable format {fmt}"
        assert len(chosen) == 1, f"${{{name}}} used without a format but has several values {chosen}"
        return chosen[0]

    return re.sub(r"\$\{(\w+)(?::(\w+))?\}", replace, text)


def resolve_variables(
    dashboard: dict[str, Any], client: httpx.Client, url: str, org: str, max_values: int = 5
) -> dict[str, list[str]]:
    """Each variable's values, resolved in order as Grafana does (query variables: run their Flux)."""
    values: dict[str, list[str]] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        kind = var["type"]
        if kind in ("constant", "textbox"):
            values[var["name"]] = [var["query"]]
        elif kind == "custom":
            values[var["name"]] = [var["query"].split(",")[0].strip()]
        elif kind == "query":
            result = run_flux(client, url, org, interpolate(var["query"], values))
            found = sorted(result.values("_value"))
            assert found, f"variable {var['name']} of {dashboard['title']} has no value: {var['query']}"
            values[var["name"]] = found[:max_values] if var.get("multi") else found[:1]
        else:
            raise AssertionError(f"variable type {kind} not handled by the test")
    return values
