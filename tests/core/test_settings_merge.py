"""The two rules of settings, on every settings class and every section, found by introspection: a partial
value of any section keeps that section's defaults; a top-level name no service knows is an error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from telestack.core.errors import ConfigError
from telestack.core.settings import SECTIONS, TelestackSettings, env_name, load_settings
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


# --- one environment variable, on every leaf of every section ----------------------------------------------


def _leaves(cls: type[TelestackSettings]) -> Iterator[tuple[str, ...]]:
    """The path of every leaf setting of `cls` below a section (a value, not a section) with a default."""
    defaults = cls()
    for path in _section_paths(defaults):
        section = _at(defaults, path)
        for name in type(section).model_fields:
            if not isinstance(getattr(section, name), BaseModel | None):
                yield (*path, name)


def _env_text(model: BaseModel, name: str) -> str:
    value = model.model_dump(mode="json")[name]
    return value if isinstance(value, str) else json.dumps(value)


def _leaf_cases() -> list[Any]:
    return [
        pytest.param(cls, path, id=f"{cls.__name__}:{'.'.join(path)}")
        for cls in _settings_classes()
        for path in _leaves(cls)
    ]


@pytest.mark.parametrize(("cls", "path"), _leaf_cases())
def test_one_variable_of_any_section_keeps_the_other_defaults(
    cls: type[TelestackSettings], path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TELESTACK_<A>__<B>__<LEAF>`` alone, set to its default: every setting, the section's others included,
    is the default (without the merge rule a nested section falls back to its class defaults: e.g. a service's
    ``http.port`` to 0)."""
    defaults = load_settings(cls)
    monkeypatch.setenv(env_name(*path), _env_text(_at(defaults, path[:-1]), path[-1]))
    assert load_settings(cls) == defaults


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_one_key_of_any_section_in_the_file_keeps_the_other_defaults(
    cls: type[TelestackSettings], tmp_path: Any
) -> None:
    defaults = load_settings(cls)
    for path in _leaves(cls):
        value = json.loads(_at(defaults, path[:-1]).model_dump_json())[path[-1]]
        config = tmp_path / "telestack.yaml"
        config.write_text(json.dumps(_nested(path[:-1], {path[-1]: value})))  # JSON is YAML
        assert load_settings(cls, config) == defaults, path


# --- a top-level name no service knows is an error ----------------------------------------------------------


def _misspelled(name: str) -> str:
    return name[:-1] if len(name) > 3 else name + "x"  # kafka -> kafk, log -> logx


def _section_cases() -> list[Any]:
    return [
        pytest.param(cls, name, id=f"{cls.__name__}:{name}") for cls in _settings_classes() for name in cls.model_fields
    ]


@pytest.mark.parametrize(("cls", "section"), _section_cases())
def test_a_misspelled_section_is_an_error_in_the_file(
    cls: type[TelestackSettings], section: str, tmp_path: Any
) -> None:
    wrong = _misspelled(section)
    assert wrong not in SECTIONS
    config = tmp_path / "telestack.yaml"
    config.write_text(json.dumps({wrong: {}}))
    with pytest.raises(ConfigError, match=f"unknown settings section '{wrong}'") as info:
        load_settings(cls, config)
    assert f"did you mean '{section}'" in str(info.value)
    with pytest.raises(ConfigError, match=f"unknown settings section '{wrong}'"):
        load_settings(cls, overrides={wrong: {}})


@pytest.mark.parametrize(("cls", "section"), _section_cases())
def test_a_misspelled_section_is_an_error_in_the_environment(
    cls: type[TelestackSettings], section: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    variable = env_name(_misspelled(section), "anything")
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigError, match=variable):
        load_settings(cls)
    monkeypatch.delenv(variable)
    (tmp_path / ".env").write_text(f"{variable}=1\n")
    with pytest.raises(ConfigError, match=variable):
        load_settings(cls)


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_other_services_sections_are_ignored(
    cls: type[TelestackSettings], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The shared file (and compose's shared environment) holds every service's sections."""
    others = sorted(SECTIONS - set(cls.model_fields))
    config = tmp_path / "telestack.yaml"
    config.write_text(json.dumps({name: {} for name in others}))
    for name in others:
        monkeypatch.setenv(env_name(name, "anything"), "1")
    assert load_settings(cls, config) == load_settings(cls, overrides={name: {} for name in others})
    monkeypatch.setenv("TELESTACK_NOT_A_SECTION", "1")  # no __: not a settings variable (TELESTACK_CACHE, ...)
    load_settings(cls)


def test_the_sections_are_every_service_s_and_only_theirs() -> None:
    declared = set().union(
        *(cls.model_fields for cls in _settings_classes() if cls.__module__.startswith("telestack."))
    )
    assert declared == SECTIONS
