"""The hostile-input corpus (``tests/data/hostile/``): cases as YAML, built into the exact bytes they describe.

A case holds its input as text (``payload`` / ``body``, with time tokens), raw bytes (``payload_hex`` /
``body_hex``), a repetition (``repeat: [prefix, middle, times, suffix]``), a nesting
(``nest: [open, inner, close, depth]``) or a wide object (``wide_object: N``), and what must become of it
(``expect``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).resolve().parents[1] / "data" / "hostile"
DAY_S = 86_400
# Topics of the rules in mqtt_rules.yaml (one per rule), and one no rule maps.
FUZZ_TOPICS = (
    "hostile/json/d1",
    "hostile/jsonnow/d1",
    "hostile/tasmota/d1",
    "hostile/value/d1/v",
    "hostile/typed/d1/count",
    "hostile/line/d1",
    "nowhere",
)


def load(name: str) -> list[dict[str, Any]]:
    """The cases of one corpus file, each with its `name` as the pytest id."""
    cases: list[dict[str, Any]] = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
    return cases


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [str(case.get("name") or case.get("line")) for case in cases]


def time_tokens(now_s: float, unit: int) -> dict[str, str]:
    """Replacement text of the time tokens, in `unit` per second (1_000 for ms, 1_000_000_000 for ns)."""
    now = int(now_s * unit)
    suffix = "MS" if unit == 1_000 else "NS"
    return {
        f"DAY_AGO_{suffix}": str(now - DAY_S * unit),
        f"DAY_AHEAD_{suffix}": str(now + DAY_S * unit),
        f"NOW_{suffix}": str(now),
    }


def build(case: dict[str, Any], key: str, tokens: dict[str, str]) -> bytes:
    """The bytes of a case's input; `key` is ``payload`` or ``body``."""
    if f"{key}_hex" in case:
        return bytes.fromhex(case[f"{key}_hex"])
    if "repeat" in case:
        prefix, middle, times, suffix = case["repeat"]
        text = _replace(prefix, tokens) + middle * int(times) + _replace(suffix, tokens)
    elif "nest" in case:
        opening, inner, closing, depth = case["nest"]
        text = opening * int(depth) + inner + closing * int(depth)
    elif "wide_object" in case:
        text = json.dumps({f"k{i}": i for i in range(int(case["wide_object"]))})
    else:
        text = _replace(case[key], tokens)
    # surrogatepass: a lone surrogate escaped in JSON text ("\ud800") stays six ASCII characters here.
    return text.encode("utf-8", "surrogatepass")


def _replace(text: str, tokens: dict[str, str]) -> str:
    for token, value in tokens.items():
        text = text.replace(token, value)
    return text
