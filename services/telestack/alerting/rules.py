"""Alert rules: the YAML format, its validation (every problem reported with its line), and matchers.

A rules file (``config/alerts.yaml`` is a commented example)::

    defaults:                      # applied to every rule that does not say otherwise
      notify: [sms-brasserie]
      repeat_interval: 4h
    notifiers:                     # name → how to reach people (webhook, email, sms, mqtt)
      sms-brasserie: {type: sms, url: ..., recipients: [...], form: {...}}
    rules:
      - name: fermenter_setpoint
        select: {measurement: fermenter, tags: {device: {glob: "f*"}}, field: temperature}
        condition: {type: deviation, setpoint: {field: setpoint}, max: 2.0, hysteresis: 0.5}
        for: 15m
        severity: warning
        annotations:
          summary: "Fermenteur {device} : {value:.1f} °C pour une consigne de {setpoint:.1f} °C"
    silences: [{matchers: {device: f3}, ends: 2025-01-31T18:00:00+01:00, comment: nettoyage}]
    inhibit: [{source: {severity: critical}, target: {severity: warning}, equal: [device]}]

`load_rules` reads and validates a file; any problem raises `RuleError` listing ``file:line: where: what``
for each one, so a bad file is refused at start with a message that points at the line to fix.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from telestack.alerting.errors import RuleError, RuleProblem
from telestack.alerting.notifiers.config import NotifierConfig
from telestack.alerting.templates import check_template
from telestack.core.durations import Duration

__all__ = [
    "AlertCondition",
    "DeviationCondition",
    "InhibitRule",
    "LabelMatchers",
    "MatcherSpec",
    "NoDataCondition",
    "RateCondition",
    "Rule",
    "RuleSet",
    "RulesFile",
    "Selector",
    "SetpointSeries",
    "Silence",
    "ThresholdCondition",
    "WindowCondition",
    "compile_matchers",
    "load_rules",
    "parse_rules",
]

SEVERITIES = ("info", "warning", "critical")


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MatcherSpec(_Model):
    """One label or tag matcher: exactly one of equals / glob / regex (anchored); `negate` inverts it."""

    equals: Annotated[str | None, BeforeValidator(_scalar_to_str)] = None
    glob: str | None = None
    regex: str | None = None
    negate: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> MatcherSpec:
        kinds = [k for k in ("equals", "glob", "regex") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a matcher needs exactly one of equals, glob or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self


def _matcher_from_scalar(value: Any) -> Any:
    """``device: f1`` is shorthand for ``device: {equals: f1}``."""
    if isinstance(value, str | int | float | bool):
        return {"equals": value}
    return value


LabelMatchers = dict[str, Annotated[MatcherSpec, BeforeValidator(_matcher_from_scalar)]]
ValueMatcher = Callable[[str | None], bool]


def _compile_matcher(spec: MatcherSpec) -> ValueMatcher:
    if spec.equals is not None:
        expected = spec.equals

        def test(value: str | None) -> bool:
            return value == expected
    else:
        pattern = re.compile(fnmatch.translate(spec.glob) if spec.glob is not None else f"(?:{spec.regex})\\Z")

        def test(value: str | None) -> bool:
            return value is not None and pattern.match(value) is not None

    if spec.negate:
        return lambda value: not test(value)
    return test


def compile_matchers(matchers: Mapping[str, MatcherSpec]) -> Callable[[Mapping[str, str]], bool]:
    """One predicate over a label (or tag) set that is true when every matcher matches."""
    compiled = [(name, _compile_matcher(spec)) for name, spec in matchers.items()]
    if not compiled:
        return lambda labels: True

    def matches(labels: Mapping[str, str]) -> bool:
        return all(test(labels.get(name)) for name, test in compiled)

    return matches


class Selector(_Model):
    """Which series a rule watches: one alert instance per matching series (measurement + tag set)."""

    measurement: str = Field(min_length=1, description="measurement name, exact")
    tags: LabelMatchers = Field(default_factory=dict, description="tag → matcher; all must match")
    field: str | None = Field(None, description="the field evaluated (a no-data rule may omit it: any field)")


class ClearSpec(_Model):
    """A separate clear condition on the same value: the alert resolves when it is true."""

    above: float | None = None
    below: float | None = None
    inside: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one(self) -> ClearSpec:
        if sum(v is not None for v in (self.above, self.below, self.inside)) != 1:
            raise ValueError("clear needs exactly one of above, below or inside")
        return self


class _Compared(_Model):
    above: float | None = Field(None, description="active when the value is above this")
    below: float | None = Field(None, description="active when the value is below this")
    outside: tuple[float, float] | None = Field(None, description="active when the value leaves [low, high]")
    hysteresis: float | None = Field(None, ge=0, description="clear only once back by this much")
    clear: ClearSpec | None = Field(None, description="a separate clear condition (instead of hysteresis)")

    def _comparisons(self) -> list[str]:
        return [k for k in ("above", "below", "outside") if getattr(self, k) is not None]

    @model_validator(mode="after")
    def _check_comparison(self) -> _Compared:
        extra = 1 if isinstance(self, DeviationCondition) and self.max is not None else 0
        if len(self._comparisons()) + extra != 1:
            allowed = "above, below, outside" + (" or max" if isinstance(self, DeviationCondition) else "")
            raise ValueError(f"give exactly one of {allowed}")
        if self.outside is not None and self.outside[0] > self.outside[1]:
            raise ValueError("outside: [low, high] needs low <= high")
        if self.hysteresis is not None and self.clear is not None:
            raise ValueError("give hysteresis or clear, not both")
        return self


class ThresholdCondition(_Compared):
    type: Literal["threshold"]


class SetpointSeries(_Model):
    """A setpoint read from a field of the same point/series, or from another series of the same device."""

    field: str = Field(min_length=1, description="the setpoint field")
    measurement: str | None = Field(None, description="another series' measurement (default: the same series)")
    tags: LabelMatchers = Field(default_factory=dict, description="extra matchers on the setpoint series")
    match: list[str] = Field(default_factory=lambda: ["device"], description="tags equal on both series")


class DeviationCondition(_Compared):
    type: Literal["deviation"]
    setpoint: float | SetpointSeries = Field(description="a constant, or where the setpoint is read")
    max: float | None = Field(None, gt=0, description="active when |value - setpoint| exceeds this")


class NoDataCondition(_Model):
    type: Literal["nodata"]
    after: Duration = Field(gt=0, description="active when the series sent nothing for this long")
    expect: Literal["registry"] | list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        description="devices that must report even if never seen: `registry` (the devices of the device registry "
        "whose id matches select.tags.device) or a list of ids; one instance per device (tag `device`), "
        "and a never-seen device fires `after` from the time alerting first expected it",
    )


class RateCondition(_Compared):
    type: Literal["rate"]
    per: Duration = Field(60.0, gt=0, description="the rate's time unit (default: per minute)")
    window: Duration | None = Field(None, gt=0, description="rate over this window (default: last two points)")


class WindowCondition(_Compared):
    type: Literal["window"]
    aggregate: Literal["mean", "max", "min", "sum", "count"]
    window: Duration = Field(gt=0, description="aggregate over the points of the last N seconds")


AlertCondition = Annotated[
    ThresholdCondition | DeviationCondition | NoDataCondition | RateCondition | WindowCondition,
    Field(discriminator="type"),
]


class Defaults(_Model):
    notify: list[str] = Field(default_factory=list, description="notifiers of rules that do not list theirs")
    group_by: list[str] = Field(default_factory=lambda: ["rule"], description="labels that group notifications")
    group_wait: Duration = Field(0.0, description="wait this long to batch alerts of one group")
    repeat_interval: Duration = Field(4 * 3600.0, gt=0, description="re-notify a firing alert this often")
    severity: Literal["info", "warning", "critical"] = "warning"


class Rule(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", description="unique rule name (letters, digits, _.:-)")
    select: Selector
    condition: AlertCondition
    for_: Duration = Field(0.0, alias="for", description="pending period before firing")
    severity: Literal["info", "warning", "critical"] | None = None
    labels: dict[str, Annotated[str, BeforeValidator(_scalar_to_str)]] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict, description="templates: summary, description, ...")
    notify: list[str] | None = None
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    repeat_interval: Duration | None = Field(None, gt=0)
    enabled: bool = True


class Silence(_Model):
    """Mute notifications of alerts whose labels match, between `starts` and `ends` (naive times are local)."""

    matchers: LabelMatchers = Field(min_length=1)
    starts: datetime | None = None
    ends: datetime | None = None
    comment: str = ""
    created_by: str = ""

    def active_between(self) -> tuple[float, float]:
        """(start, end) in epoch seconds; open ends are infinite."""
        start = self.starts.astimezone().timestamp() if self.starts else float("-inf")
        end = self.ends.astimezone().timestamp() if self.ends else float("inf")
        return start, end


class InhibitRule(_Model):
    """While an alert matching `source` fires, alerts matching `target` with equal `equal` labels are muted."""

    source: LabelMatchers = Field(min_length=1)
    target: LabelMatchers = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class RulesFile(_Model):
    defaults: Defaults = Field(default_factory=lambda: Defaults())
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    silences: list[Silence] = Field(default_factory=list)
    inhibit: list[InhibitRule] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A validated rules file, with each rule's defaults resolved."""

    source: str
    file: RulesFile

    @property
    def rules(self) -> list[Rule]:
        return [rule for rule in self.file.rules if rule.enabled]

    @property
    def notifiers(self) -> Mapping[str, NotifierConfig]:
        return self.file.notifiers

    def severity(self, rule: Rule) -> str:
        return rule.severity or self.file.defaults.severity

    def notify(self, rule: Rule) -> list[str]:
        return rule.notify if rule.notify is not None else self.file.defaults.notify

    def group_by(self, rule: Rule) -> list[str]:
        return rule.group_by if rule.group_by is not None else self.file.defaults.group_by

    def group_wait(self, rule: Rule) -> float:
        return rule.group_wait if rule.group_wait is not None else self.file.defaults.group_wait

    def repeat_interval(self, rule: Rule) -> float:
        return rule.repeat_interval if rule.repeat_interval is not None else self.file.defaults.repeat_interval


# --- YAML with line numbers ----------------------------------------------------------------------------


class _LinedDict(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class _LinedList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _LineLoader(yaml.SafeLoader):
    """A safe loader whose mappings and sequences remember the line of each key and item."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LinedDict:
    loader.flatten_mapping(node)
    result = _LinedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise _DuplicateKey(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _LinedList:
    result = _LinedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _locate(root: Any, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest YAML node on `loc` (steps that are not in the YAML, like union tags, skipped)."""
    node, line = root, getattr(root, "line", None)
    for step in loc:
        if isinstance(node, _LinedDict) and step in node:
            line, node = node.key_lines[step], node[step]
        elif isinstance(node, _LinedList) and isinstance(step, int) and 0 <= step < len(node):
            line, node = node.item_lines[step], node[step]
    return line


def _describe(root: Any, loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    node = root
    for step in loc:
        if isinstance(node, _LinedList) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(f"[{step}]" + (f" ({name})" if isinstance(name, str) else ""))
        elif isinstance(node, _LinedDict) and step in node:
            node = node[step]
            parts.append(("." if parts else "") + str(step))
        elif isinstance(node, dict) and node.get("type") == step:
            continue  # the tag of a union member: already visible as `type:`
        elif isinstance(step, str) and not step.startswith(("function-", "union[")):
            # a key pydantic expected but the YAML lacks, or a union member: name it, it helps
            parts.append(("." if parts else "") + step)
    return "".join(parts)


def _cross_check(data: Any, rules_file: RulesFile) -> list[RuleProblem]:
    """What pydantic cannot see alone: unique names, known notifiers, renderable templates."""
    problems: list[RuleProblem] = []

    def problem(loc: tuple[int | str, ...], message: str) -> None:
        problems.append(RuleProblem(_locate(data, loc), _describe(data, loc), message))

    known = set(rules_file.notifiers)
    for i, name in enumerate(rules_file.defaults.notify):
        if name not in known:
            problem(
                ("defaults", "notify", i), f"unknown notifier {name!r} (known: {', '.join(sorted(known)) or 'none'})"
            )
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules_file.rules):
        if rule.name in seen:
            problem(("rules", index, "name"), f"rule name {rule.name!r} is already used by rules[{seen[rule.name]}]")
        seen.setdefault(rule.name, index)
        for i, name in enumerate(rule.notify or []):
            if name not in known:
                problem(
                    ("rules", index, "notify", i),
                    f"unknown notifier {name!r} (known: {', '.join(sorted(known)) or 'none'})",
                )
        for key, template in rule.annotations.items():
            try:
                check_template(template)
            except ValueError as exc:
                problem(("rules", index, "annotations", key), f"bad template: {exc}")
        condition = rule.condition
        if isinstance(condition, NoDataCondition) and rule.for_ > 0:
            problem(("rules", index, "for"), "a nodata rule waits `after`; leave `for` out")
        if isinstance(condition, NoDataCondition) and isinstance(condition.expect, list):
            device_matches = compile_matchers({k: v for k, v in rule.select.tags.items() if k == "device"})
            for i, device_id in enumerate(condition.expect):
                if not device_matches({"device": device_id}):
                    problem(
                        ("rules", index, "condition", "expect", i), f"{device_id!r} does not match select.tags.device"
                    )
        if not isinstance(condition, NoDataCondition) and rule.select.field is None:
            problem(("rules", index, "select"), f"a {condition.type} rule needs select.field")
    for name, config in rules_file.notifiers.items():
        for key, template in config.templates().items():
            try:
                check_template(template)
            except ValueError as exc:
                problem(("notifiers", name, key), f"bad template: {exc}")
    return problems


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Validate rules from YAML `text`; `source` names it in error messages. Raises `RuleError`."""
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RuleError(source, [RuleProblem(line, "", f"YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise RuleError(source, [RuleProblem(None, "", f"YAML: {exc}")]) from None
    if data is None:
        data = _LinedDict()
        data.line, data.key_lines = 1, {}
    if not isinstance(data, dict):
        raise RuleError(source, [RuleProblem(1, "", "a rules file is a mapping with a `rules:` list")])
    try:
        rules_file = RulesFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            RuleProblem(_locate(data, err["loc"]), _describe(data, err["loc"]), err["msg"])
            for err in exc.errors(include_url=False)
        ]
        problems.sort(key=lambda p: p.line or 0)
        raise RuleError(source, problems) from None
    problems = _cross_check(data, rules_file)
    if problems:
        raise RuleError(source, problems)
    return RuleSet(source, rules_file)


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file. Raises `RuleError` (also when the file cannot be read)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(path, [RuleProblem(None, "", f"cannot read the rules file: {exc.strerror or exc}")]) from None
    return parse_rules(text, str(path))
