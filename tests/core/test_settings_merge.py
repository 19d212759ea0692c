"""The one merge rule of settings: a partial value of any section keeps that section's defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from telestack.core.settings import TelestackSettings, env_name, load_settings
from tests.test_compose import _settings_classes


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no config/telestack.yaml, no .env
    for name in list(__import__("os").environ):
        if name.startswith("TELESTACK_"):
            monkeypatch.delenv(name)


def _section_paths(model: BaseModel, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield (*prefix, name)
            yield from _section_paths(value, (*prefix, name))


def _nested(path: tuple[str, ...], leaf: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = leaf
    for part in reversed(path):
        value = {part: value}
    return value


def _at(model: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        model = getattr(model, part)
    return model


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_an_empty_partial_value_of_every_section_keeps_its_defaults(
    cls: type[TelestackSettings], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    defaults = load_settings(cls)
    for path in _section_paths(defaults):
        partial = load_settings(cls, overrides=_nested(path, {}))
        assert _at(partial, path) == _at(defaults, path), path


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_one_environment_variable_changes_one_value_of_a_nested_section(
    cls: type[TelestackSettings], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Compose sets TELESTACK_<SERVICE>__HTTP__HOST alone: the service keeps its own default port."""
    defaults = load_settings(cls)
    for path in _section_paths(defaults):
        section = _at(defaults, path)
        if "host" in type(section).model_fields and "port" in type(section).model_fields:
            monkeypatch.setenv(env_name(*path, "host"), "0.0.0.0")
            changed = load_settings(cls)
            monkeypatch.delenv(env_name(*path, "host"))
            assert _at(changed, path).host == "0.0.0.0"
            assert _at(changed, path).port == section.port, path
