"""Alerting: rules on the live telemetry stream, alert states that survive restarts, notifications.

rules.py        the YAML rules format, validated with the line of every problem (`load_rules`)
conditions.py   comparisons (hysteresis, clear conditions), rate of change, window aggregates
alert.py        alert instances and states: normal → pending → firing → resolved
engine.py       `AlertEngine`: points and clock ticks in, state changes out (pure, clock injected)
dispatch.py     `Dispatcher`: grouping, repeat interval, resolved messages, silences, inhibition, dedup
notifiers/      webhook, email, SMS gateway, MQTT behind `Notifier.send`; one worker thread each
state_store.py  durable instance state in a compacted Kafka topic
event_sinks.py  state changes to Kafka ``alerts`` (JSON) and InfluxDB ``alerts`` (Grafana annotations)
service.py      the service loop (`telestack alerting`); backtest.py, status.py: `telestack alerts ...`
"""

from __future__ import annotations

from telestack.alerting.alert import AlertState, Instance, StateChange
from telestack.alerting.dispatch import Dispatcher
from telestack.alerting.engine import AlertEngine
from telestack.alerting.errors import AlertingError, NotifierError, RuleError, StateStoreError
from telestack.alerting.rules import RuleSet, load_rules, parse_rules

__all__ = [
    "AlertEngine",
    "AlertState",
    "AlertingError",
    "Dispatcher",
    "Instance",
    "NotifierError",
    "RuleError",
    "RuleSet",
    "StateChange",
    "StateStoreError",
    "load_rules",
    "parse_rules",
]
