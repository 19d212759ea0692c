"""Mapping rules: which MQTT topics become which measurement, tags and fields, read from YAML.

A rule names a topic filter whose levels may be named (``fermenters/{device}/{field}``); a named level
matches one topic level like ``+`` and its value can be used in the measurement, the tags, the field name and
the Kafka key (the device id). The first rule whose filter matches a topic maps the message::

    rules:
      - name: stc1000
        topic: fermenters/{device}/{field}     # subscribes to fermenters/+/+
        format: value                          # json | value | line
        measurement: fermenter
        tags: {device: "{device}", site: brasserie}
        field: "{field}"
        types: {heating: bool, cooling: bool}

See ``config/mqtt-bridge.yaml`` for every option at work on real device payloads.

>>> f = TopicFilter.parse("fermenters/{device}/{field}")
>>> f.subscription, f.match("fermenters/f1/temperature")
('fermenters/+/+', {'device': 'f1', 'field': 'temperature'})
>>> f.match("fermenters/f1") is None
True
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from telestack.mqtt_bridge.errors import RuleError

__all__ = [
    "FieldType",
    "Rule",
    "RuleSet",
    "RulesFile",
    "Template",
    "TimestampSpec",
    "TopicFilter",
    "TopicMatch",
    "filter_covers",
    "load_rules",
    "parse_rules",
]

FieldType = Literal["float", "int", "uint", "bool", "string"]

_NAMED_LEVEL = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# The name usable in every template besides the named levels: the whole MQTT topic.
TOPIC_NAME = "topic"
# The tag naming the publisher: never taken from a payload when the rule sets it (see `CompiledRule.bound_tags`).
IDENTITY_TAG = "device"


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """An MQTT topic filter whose levels may be named: ``{name}`` matches one level, like ``+``."""

    pattern: str
    subscription: str
    names: tuple[str, ...]
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, pattern: str) -> TopicFilter:
        if not pattern:
            raise ValueError("a topic filter must not be empty")
        levels = pattern.split("/")
        names: list[str] = []
        parts: list[str] = []
        subscription: list[str] = []
        for i, level in enumerate(levels):
            named = _NAMED_LEVEL.match(level)
            if named:
                name = named.group(1)
                if name in names or name == TOPIC_NAME:
                    raise ValueError(f"{pattern!r}: level name {name!r} is used twice or reserved")
                names.append(name)
                parts.append(f"(?P<{name}>[^/]*)")
                subscription.append("+")
            elif level == "+":
                parts.append("[^/]*")
                subscription.append("+")
            elif level == "#":
                if i != len(levels) - 1:
                    raise ValueError(f"{pattern!r}: '#' must be the last level")
                subscription.append("#")
            elif any(c in level for c in "{}+#"):
                raise ValueError(f"{pattern!r}: level {level!r} mixes text with a wildcard or a {{name}}")
            else:
                parts.append(re.escape(level))
                subscription.append(level)
        body = "/".join(parts)
        if levels[-1] == "#":
            # 'a/#' matches 'a' itself and everything below it; a lone '#' matches every topic.
            body = ".*" if len(levels) == 1 else body + "(?:/.*)?"
        return cls(pattern, "/".join(subscription), tuple(names), re.compile(f"^{body}$", re.DOTALL))

    def match(self, topic: str) -> dict[str, str] | None:
        """The named levels' values if `topic` matches, else None."""
        found = self.regex.match(topic)
        if found is None:
            return None
        return found.groupdict()


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic matched by MQTT filter `narrow` is also matched by `wide`.

    >>> filter_covers("tele/#", "tele/+/SENSOR"), filter_covers("tele/+/SENSOR", "tele/#")
    (True, False)
    """
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    for i, level in enumerate(wide_levels):
        if level == "#":
            return True
        if i >= len(narrow_levels):
            return False
        other = narrow_levels[i]
        if other == "#":
            return False
        if level != "+" and level != other:
            return False
    return len(wide_levels) == len(narrow_levels)


class Template:
    """A string with ``{name}`` references to named topic levels (or ``{topic}``), rendered per message.

    >>> Template.parse("{device}-{field}", {"device", "field"}).render({"device": "f1", "field": "setpoint"})
    'f1-setpoint'
    """

    __slots__ = ("names", "text")

    def __init__(self, text: str, names: frozenset[str]) -> None:
        self.text = text
        self.names = names

    @classmethod
    def parse(cls, text: str, allowed: set[str] | frozenset[str]) -> Template:
        names: set[str] = set()
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"template {text!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if spec or conversion:
                raise ValueError(f"template {text!r}: format specs and conversions are not supported")
            if name not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise ValueError(f"template {text!r} uses {{{name}}}, which is not a named topic level ({known})")
            names.add(name)
        return cls(text, frozenset(names))

    @property
    def is_static(self) -> bool:
        return not self.names

    def render(self, values: dict[str, str]) -> str:
        return self.text.format_map(values) if self.names else self.text.replace("{{", "{").replace("}}", "}")


class TimestampSpec(BaseModel):
    """Where a JSON payload carries its own time, and how it is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="the payload key holding the time (flattened, e.g. Time or meta_ts)")
    format: str = Field(
        "rfc3339",
        description="unix | unix_ms | unix_us | unix_ns | rfc3339 (ISO 8601) | a strptime pattern (%d/%m/%Y %H:%M)",
    )
    timezone: str = Field("UTC", description="IANA zone of times written without an offset, e.g. Europe/Paris")

    @model_validator(mode="after")
    def _check(self) -> TimestampSpec:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if self.format not in ("unix", "unix_ms", "unix_us", "unix_ns", "rfc3339") and "%" not in self.format:
            raise ValueError(
                f"timestamp format {self.format!r} is not unix, unix_ms, unix_us, unix_ns, rfc3339 or a strptime "
                "pattern"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timestamp timezone {self.timezone!r} is not a known IANA zone") from None
        return self


class Rule(BaseModel):
    """One mapping rule; see the module docstring and ``config/mqtt-bridge.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="unique name; it is the `rule` header of dead letters")
    topic: str = Field(description="MQTT topic filter; {name} levels match one level and can be used in templates")
    format: Literal["json", "value", "line"] = Field(
        "json", description="json: an object or array of objects; value: a number, bool or string; line: line protocol"
    )
    measurement: str | None = Field(None, description="measurement name (template); required unless format is line")
    device: str | None = Field(
        None, description="the device id, used as the Kafka key (template); default {device} if named, else the topic"
    )
    tags: dict[str, str] | None = Field(
        None,
        description="tag → value template; default: every named level not used in measurement or field",
    )
    field: str = Field("value", description="value format: the field name (template), e.g. {field}")
    fields: list[str] | dict[str, str] | None = Field(
        None, description="json: keep only these (flattened) keys; a mapping renames them; default all"
    )
    exclude: list[str] = Field(default_factory=list, description="json: (flattened) keys to drop")
    tag_keys: list[str] = Field(default_factory=list, description="json: (flattened) keys that become tags")
    types: dict[str, FieldType] = Field(
        default_factory=dict,
        description="field name → float|int|uint|bool|string; default: numbers float, booleans bool, text string",
    )
    separator: str = Field("_", description="json: joins nested keys and array indexes when flattening")
    timestamp: TimestampSpec | None = Field(None, description="json: the payload's own time; default arrival time")

    @model_validator(mode="after")
    def _check_format_options(self) -> Rule:
        if self.format == "line":
            if self.measurement is not None:
                raise ValueError("measurement does not apply to format line (lines carry their own)")
        elif self.measurement is None:
            raise ValueError(f"measurement is required for format {self.format}")
        if self.format != "json":
            for option in ("fields", "timestamp"):
                if getattr(self, option) is not None:
                    raise ValueError(f"{option} applies to format json only")
            for option in ("exclude", "tag_keys"):
                if getattr(self, option):
                    raise ValueError(f"{option} applies to format json only")
        if self.format == "line" and self.types:
            raise ValueError("types do not apply to format line (its values are typed already)")
        return self


class RulesFile(BaseModel):
    """The YAML document: a list of rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its filter and templates parsed once."""

    rule: Rule
    filter: TopicFilter
    measurement: Template | None
    device: Template | None  # None: the topic is the device id
    tags: tuple[tuple[str, Template], ...]
    bound_tags: frozenset[str]  # tags a payload may not change: those taken from the topic, and `device`
    field: Template
    renames: dict[str, str] | None
    exclude: frozenset[str]
    tag_keys: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.rule.name


def _compile(rule: Rule) -> CompiledRule:
    try:
        topic_filter = TopicFilter.parse(rule.topic)
        allowed = frozenset((*topic_filter.names, TOPIC_NAME))
        measurement = Template.parse(rule.measurement, allowed) if rule.measurement is not None else None
        field = Template.parse(rule.field, allowed)
        if rule.device is not None:
            device: Template | None = Template.parse(rule.device, allowed)
        elif "device" in topic_filter.names:
            device = Template.parse("{device}", allowed)
        else:
            device = None
        if rule.tags is None:
            used = (measurement.names if measurement else frozenset()) | (
                field.names if rule.format == "value" else frozenset()
            )
            tags = tuple(
                (name, Template.parse(f"{{{name}}}", allowed)) for name in topic_filter.names if name not in used
            )
        else:
            tags = tuple((key, Template.parse(value, allowed)) for key, value in rule.tags.items())
    except ValueError as exc:
        raise RuleError(f"rule {rule.name!r}: {exc}") from None
    if isinstance(rule.fields, dict):
        renames: dict[str, str] | None = dict(rule.fields)
    elif isinstance(rule.fields, list):
        renames = {key: key for key in rule.fields}
    else:
        renames = None
    return CompiledRule(
        rule=rule,
        filter=topic_filter,
        measurement=measurement,
        device=device,
        tags=tags,
        bound_tags=frozenset(key for key, template in tags if template.names or key == IDENTITY_TAG),
        field=field,
        renames=renames,
        exclude=frozenset(rule.exclude),
        tag_keys=tuple(rule.tag_keys),
    )


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """A topic matched by a rule, with everything that depends on the topic alone rendered once."""

    rule: CompiledRule
    values: dict[str, str]  # the named levels, plus ``topic``
    key: str  # the device id: the Kafka key
    measurement: str | None
    tags: dict[str, str]  # shared by every point of this topic: copy before changing
    field: str  # value format: the field name
    bound_tags: dict[str, str]  # the tags that are the publisher's identity (`CompiledRule.bound_tags`), rendered


class RuleSet:
    """Compiled rules, matched in order; a topic's match is cached (topics repeat)."""

    CACHE_SIZE = 50_000

    def __init__(self, rules: list[Rule]) -> None:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise RuleError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        self.rules: tuple[CompiledRule, ...] = tuple(_compile(rule) for rule in rules)
        self._cache: dict[str, TopicMatch | None] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, topic: str) -> TopicMatch | None:
        """The first rule matching `topic`, with the topic's device id, measurement, tags and field; or None."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found: TopicMatch | None = None
        for compiled in self.rules:
            values = compiled.filter.match(topic)
            if values is not None:
                values[TOPIC_NAME] = topic
                tags = {key: template.render(values) for key, template in compiled.tags}
                found = TopicMatch(
                    rule=compiled,
                    values=values,
                    key=compiled.device.render(values) if compiled.device is not None else topic,
                    measurement=compiled.measurement.render(values) if compiled.measurement is not None else None,
                    tags=tags,
                    field=compiled.field.render(values),
                    bound_tags={key: value for key, value in tags.items() if key in compiled.bound_tags},
                )
                break
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[topic] = found
        return found

    def subscriptions(self) -> list[str]:
        """The MQTT filters to subscribe to, without those another one already covers."""
        return minimal_filters(compiled.filter.subscription for compiled in self.rules)


def minimal_filters(filters: Any) -> list[str]:
    """`filters` in order, without duplicates and without those another filter covers."""
    unique = list(dict.fromkeys(filters))
    return [
        f for i, f in enumerate(unique) if not any(j != i and filter_covers(other, f) for j, other in enumerate(unique))
    ]


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Rules from a YAML document (``rules: [...]``); `RuleError` names the rule and key at fault."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{source} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    try:
        document = RulesFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = list(err["loc"])
            where = ".".join(str(part) for part in loc)
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                rules = data.get("rules") if isinstance(data, dict) else None
                if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
                    name = rules[loc[1]].get("name")
                    if name:
                        where = f"rule {name!r}" + ("." + ".".join(str(p) for p in loc[2:]) if loc[2:] else "")
            problems.append(f"  - {where}: {err['msg']}")
        raise RuleError(f"invalid mapping rules in {source}:\n" + "\n".join(problems)) from None
    return RuleSet(document.rules)


def load_rules(path: Path) -> RuleSet:
    """Rules from a YAML file (``mqtt_bridge.rules_file``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(
            f"cannot read mapping rules {path}: {exc.strerror} (set mqtt_bridge.rules_file or --mqtt-bridge.rules-file)"
        ) from None
    return parse_rules(text, str(path))
