"""Notification decisions: once per episode, repeats, resolutions, grouping, muting, retries, restarts."""

from __future__ import annotations

from telestack.alerting.alert import AlertState
from telestack.alerting.dispatch import Dispatcher
from telestack.alerting.engine import AlertEngine
from telestack.alerting.notifiers import Notification, SendResult
from tests.alerting.builders import at, engine, fermenter

RULES = """\
defaults:
  notify: [hook, sms]
  repeat_interval: 1h
notifiers:
  hook: {type: webhook, url: "http://127.0.0.1:1/"}
  sms: {type: sms, url: "http://127.0.0.1:1/", recipients: ["+33600000000"], send_resolved: false}
rules:
  - name: hot
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 25}
    annotations:
      summary: "{device} chaud : {value:.1f} °C"
      summary_resolved: "{device} refroidi : {value:.1f} °C"
"""


def make(rules: str = RULES) -> tuple[AlertEngine, Dispatcher]:
    e = engine(rules)
    d = Dispatcher(e, send_resolved={"hook": True, "sms": False}, retry_after_s=60)
    return e, d


def feed(e: AlertEngine, d: Dispatcher, device: str, seconds: float, temperature: float) -> None:
    d.watch([c.instance for c in e.observe(fermenter(device, seconds, temperature), at(seconds))])


def deliver(d: Dispatcher, notifications: list[Notification], seconds: float, ok: bool = True) -> None:
    for n in notifications:
        d.on_result(SendResult(n.notifier, n, ok, None if ok else "boom", 1, at(seconds)), at(seconds))


def test_firing_notifies_each_notifier_once() -> None:
    e, d = make()
    feed(e, d, "f1", 0, 30.0)
    sent, _ = d.due(at(0))
    assert sorted(n.notifier for n in sent) == ["hook", "sms"]
    assert sent[0].alerts[0].text == "f1 chaud : 30.0 °C" and sent[0].status == "firing"
    assert d.due(at(1)) == ([], [])  # in flight: not again
    deliver(d, sent, 1)
    for second in range(2, 10):
        feed(e, d, "f1", second, 31.0)  # still firing: no new notification
        assert d.due(at(second))[0] == []


def test_repeat_interval_reminds_while_firing() -> None:
    e, d = make()
    feed(e, d, "f1", 0, 30.0)
    sent, _ = d.due(at(0))
    deliver(d, sent, 0)
    assert d.due(at(3599))[0] == []
    repeats, _ = d.due(at(3601))
    assert len(repeats) == 2 and all(n.alerts[0].repeat for n in repeats)


def test_resolution_is_sent_to_notifiers_that_want_it() -> None:
    e, d = make()
    feed(e, d, "f1", 0, 30.0)
    deliver(d, d.due(at(0))[0], 0)
    feed(e, d, "f1", 10, 20.0)
    sent, silently = d.due(at(10))
    assert [n.notifier for n in sent] == ["hook"]
    assert sent[0].status == "resolved" and sent[0].alerts[0].text == "f1 refroidi : 20.0 °C"
    # sms has send_resolved: false: it is marked resolved without a message, and that is persisted.
    assert [inst.notified["sms"].state for inst in silently] == [AlertState.RESOLVED]
    deliver(d, sent, 11)
    assert d.due(at(12)) == ([], [])
    assert not d.busy


def test_group_wait_batches_alerts_of_one_group() -> None:
    rules = RULES.replace("  repeat_interval: 1h", "  repeat_interval: 1h\n  group_wait: 30s")
    e, d = make(rules)
    feed(e, d, "f1", 0, 30.0)
    assert d.due(at(0))[0] == []  # the group opens, due at 30 s
    feed(e, d, "f2", 5, 30.0)
    assert d.due(at(5))[0] == []
    feed(e, d, "f3", 20, 30.0)
    sent, _ = d.due(at(31))
    hook = next(n for n in sent if n.notifier == "hook")
    assert [a.labels["device"] for a in hook.alerts] == ["f1", "f2", "f3"]
    assert hook.title == "3 alerts: hot" and hook.text.count("\n") == 2


def test_alert_that_resolves_during_group_wait_is_not_sent() -> None:
    rules = RULES.replace("  repeat_interval: 1h", "  repeat_interval: 1h\n  group_wait: 30s")
    e, d = make(rules)
    feed(e, d, "f1", 0, 30.0)
    d.due(at(0))
    feed(e, d, "f1", 10, 20.0)
    assert d.due(at(31))[0] == []
    assert not d.busy


def test_failed_delivery_is_retried_after_retry_after() -> None:
    e, d = make()
    feed(e, d, "f1", 0, 30.0)
    sent, _ = d.due(at(0))
    deliver(d, sent, 1, ok=False)
    assert d.due(at(30))[0] == []
    again, _ = d.due(at(62))
    assert sorted(n.notifier for n in again) == ["hook", "sms"]
    assert not again[0].alerts[0].repeat


def test_silenced_alert_waits_and_notifies_when_the_silence_ends() -> None:
    rules = (
        RULES
        + """\
silences:
  - matchers: {device: f1}
    ends: 2023-11-14T23:00:00+00:00
"""
    )
    e, d = make(rules)
    feed(e, d, "f1", 0, 30.0)  # at(0) is 2023-11-14T22:13:20Z
    assert d.due(at(0))[0] == []
    assert d.due(at(2000))[0] == []
    later, _ = d.due(at(2900))  # 23:01:40, after the silence
    assert len(later) == 2


def test_inhibited_warning_is_not_sent_while_the_critical_fires() -> None:
    rules = RULES.replace(
        "rules:\n",
        """\
inhibit:
  - {source: {severity: critical}, target: {severity: warning}, equal: [device]}
rules:
  - name: very_hot
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 28}
    severity: critical
""",
    )
    e, d = make(rules)
    feed(e, d, "f1", 0, 30.0)
    sent, _ = d.due(at(0))
    assert {n.alerts[0].rule for n in sent} == {"very_hot"}


def test_restart_does_not_repeat_what_was_delivered() -> None:
    e, d = make()
    feed(e, d, "f1", 0, 30.0)
    deliver(d, d.due(at(0))[0], 1)
    records = [inst.to_record() for inst in e.instances.values()]

    e2, d2 = make()
    e2.restore(records)
    d2.watch(set(e2.instances.values()))
    assert d2.due(at(100))[0] == []


def test_restart_sends_a_resolution_missed_while_down_and_an_undelivered_firing() -> None:
    e, d = make()
    feed(e, d, "f1", 0, 30.0)
    feed(e, d, "f2", 0, 30.0)
    sent, _ = d.due(at(0))
    deliver(d, [n for n in sent if n.notifier == "hook"], 1)  # killed before the SMS went out
    records = [inst.to_record() for inst in e.instances.values()]

    e2, d2 = make()
    e2.restore(records)
    d2.watch(set(e2.instances.values()))
    feed(e2, d2, "f1", 50, 20.0)  # f1 came back while we were down (the backlog is replayed)
    sent2, _ = d2.due(at(100))
    by_notifier = {n.notifier: [(a.labels["device"], a.state) for a in n.alerts] for n in sent2}
    assert by_notifier == {
        "hook": [("f1", "resolved")],  # the webhook had been told f1 fired: it hears it resolved
        "sms": [("f2", "firing")],  # the SMS about f2 never left: it does now; f1 is over, no SMS
    }
