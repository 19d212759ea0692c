"""Command-line flags generated from a settings class, so ``--help`` documents every setting.

Each leaf setting becomes a flag named by its path: ``kafka.bootstrap_servers`` → ``--kafka.bootstrap-servers``.
Its help shows the description, the default and the environment variable. Secrets get no flag (a command
line is visible to every user of the machine): they come from the environment or ``.env``.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined, to_jsonable_python

from telestack.core.errors import ConfigError
from telestack.core.settings import TelestackSettings, env_name, load_settings

__all__ = ["add_settings_arguments", "settings_from_args"]

S = TypeVar("S", bound=TelestackSettings)
_DEST_PREFIX = "setting:"


def _model_type(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside `annotation` (also `Model | None`), else None."""
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_secret(annotation: Any) -> bool:
    return SecretStr in (typing.get_args(annotation) or (annotation,))


def _is_structured(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (list, dict, tuple, set) or any(
        typing.get_origin(arg) in (list, dict, tuple, set) for arg in typing.get_args(annotation)
    )


_REQUIRED = object()


def _leaves(
    model: type[BaseModel], prefix: tuple[str, ...] = (), section_default: Any = None
) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(path, field info, effective default) of every leaf setting."""
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        if section_default is not None and section_default is not _REQUIRED:
            default = getattr(section_default, name, _REQUIRED)
        elif info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            try:
                default = info.default_factory()  # type: ignore[call-arg]
            except Exception:  # a section with required fields has no default instance
                default = _REQUIRED
        else:
            default = _REQUIRED
        nested = _model_type(info.annotation)
        if nested is not None and not _is_structured(info.annotation):
            yield from _leaves(nested, path, default if isinstance(default, BaseModel) else None)
        else:
            yield path, info, default


def add_settings_arguments(parser: argparse.ArgumentParser, settings_cls: type[TelestackSettings]) -> None:
    """Add ``--config`` and one flag per setting of `settings_cls`."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML settings file (default: $TELESTACK_CONFIG, else config/telestack.yaml if present)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for path, info, default in _leaves(settings_cls):
        section = path[0] if len(path) > 1 else "general"
        group = groups.get(section) or parser.add_argument_group(f"{section} settings")
        groups[section] = group
        env = env_name(*path)
        description = info.description or ""
        if _is_secret(info.annotation):
            # No flag; shown as a line of the group so users learn where the secret goes.
            group.description = (group.description or "") + f"{'.'.join(path)}: {description} [env {env}]\n"
            continue
        if default is _REQUIRED:
            default = "(required)"
        if isinstance(default, BaseModel):
            default = default.model_dump()
        # list defaults may hold models (e.g. buses) or paths
        shown = json.dumps(to_jsonable_python(default)) if isinstance(default, list | dict) else default
        extra = " (JSON)" if _is_structured(info.annotation) else ""
        group.add_argument(
            f"--{'.'.join(p.replace('_', '-') for p in path)}",
            dest=_DEST_PREFIX + ".".join(path),
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=f"{description}{extra} [default: {shown}; env {env}]",
        )


def settings_from_args(settings_cls: type[S], args: argparse.Namespace) -> S:
    """Load settings from ``args.config``, the environment and the flags given on the command line."""
    overrides: dict[str, Any] = {}
    structured = {path: _is_structured(info.annotation) for path, info, _ in _leaves(settings_cls)}
    for dest, raw in vars(args).items():
        if not dest.startswith(_DEST_PREFIX):
            continue
        path = tuple(dest[len(_DEST_PREFIX) :].split("."))
        value: Any = raw
        if structured.get(path):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                flag = "--" + ".".join(p.replace("_", "-") for p in path)
                raise ConfigError(f"{flag} expects JSON, got {raw!r}: {exc}") from None
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    # pydantic-settings deep-merges sources, so a flag overrides one leaf and keeps the rest of its section.
    return load_settings(settings_cls, getattr(args, "config", None), overrides)
