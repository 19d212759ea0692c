"""Plain-text templates for annotations and notification bodies, and durations as people read them
(`telestack.core.durations` parses them).

Templates use Python's ``{name}`` / ``{name:.1f}`` placeholders, nothing more: no attribute access, no
indexing, no code, so a template is text its owner writes in their own language. A name with no value
renders as ``?`` and a format spec that does not fit the value falls back to the plain value, so a
template can never break a notification.

>>> render("Fermenteur {device} : {value:.1f} °C (consigne {setpoint:.1f} °C) depuis {duration}",
...        {"device": "f2", "value": 21.04, "setpoint": 18, "duration": format_duration(930)})
'Fermenteur f2 : 21.0 °C (consigne 18.0 °C) depuis 15 min 30 s'
>>> render("{missing} {value:.1f}", {"value": None})
'? ?'
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

__all__ = ["check_template", "format_duration", "render", "template_names"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_formatter = string.Formatter()


def format_duration(seconds: float | None) -> str:
    """A short duration that reads the same in French and English: ``45 s``, ``15 min 30 s``, ``2 h 05 min``,
    ``3 d 4 h``."""
    if seconds is None:
        return "?"
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def template_names(template: str) -> list[str]:
    """The placeholder names of `template`; raises ValueError on bad syntax or a non-simple placeholder."""
    names = []
    for _literal, name, spec, conversion in _formatter.parse(template):
        if name is None:
            continue
        if not _NAME.match(name):
            raise ValueError(f"placeholder {{{name}}} is not a plain name (no dots, brackets or positions)")
        if conversion is not None:
            raise ValueError(f"placeholder {{{name}!{conversion}}}: conversions are not supported")
        if spec and "{" in spec:
            raise ValueError(f"placeholder {{{name}:{spec}}}: nested placeholders are not supported")
        names.append(name)
    return names


def check_template(template: str) -> None:
    """Raise ValueError if `template` cannot be rendered (syntax, or a format spec no number accepts)."""
    for _literal, name, spec, _conversion in _formatter.parse(template):
        if name is None or not spec:
            continue
        try:
            format(1.5, spec)
        except ValueError:
            try:
                format("text", spec)
            except ValueError as exc:
                raise ValueError(f"placeholder {{{name}:{spec}}}: {exc}") from None
    template_names(template)


def _format_value(value: Any, spec: str) -> str:
    if value is None:
        return "?"
    if spec:
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            pass
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(template: str, values: Mapping[str, Any]) -> str:
    """Render `template` with `values`; never raises for missing names or unfit specs (see module doc)."""
    parts: list[str] = []
    try:
        parsed = list(_formatter.parse(template))
    except ValueError:
        return template
    for literal, name, spec, _conversion in parsed:
        parts.append(literal)
        if name is not None:
            parts.append(_format_value(values.get(name), spec or ""))
    return "".join(parts)
