"""Templates, and durations as people read them (parsing: tests/core/test_durations.py)."""

from __future__ import annotations

import pytest

from telestack.alerting.templates import check_template, format_duration, render


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45.4, "45 s"), (900, "15 min"), (930, "15 min 30 s"), (7500, "2 h 05 min"), (266400, "3 d 2 h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_render_french_template_with_units_and_accents() -> None:
    text = render(
        "Fermenteur {device} : {value:.1f} °C, consigne {setpoint:.1f} °C, écart {deviation:+.1f} depuis {duration}",
        {"device": "f2", "value": 21.04, "setpoint": 18.0, "deviation": 3.04, "duration": "15 min"},
    )
    assert text == "Fermenteur f2 : 21.0 °C, consigne 18.0 °C, écart +3.0 depuis 15 min"


def test_render_never_raises() -> None:
    assert render("{value:.1f} {nothing} {device:>5}", {"value": None, "device": "f1"}) == "? ?    f1"
    assert render("{value:d}", {"value": 1.5}) == "1.5"  # spec does not fit: the plain value
    assert render("unbalanced {", {}) == "unbalanced {"


def test_check_template_refuses_code_and_bad_specs() -> None:
    check_template("{device} {value:.2f} {duration}")
    for bad in ("{value.__class__}", "{labels[0]}", "{value!r}", "{value:.1q}", "{0}"):
        with pytest.raises(ValueError):
            check_template(bad)
