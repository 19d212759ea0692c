"""The command state machine: transitions, late acks, mirrors from the commands topic, idempotency, pruning."""

from __future__ import annotations

import asyncio

from telestack.actuator.audit import AuditEvent, command_event, outcome_event
from telestack.actuator.tracker import CommandRecord, CommandTracker


def record(command_id: str = "c1", created_ms: int = 1_000, **kwargs: object) -> CommandRecord:
    values: dict = {
        "id": command_id,
        "device": "plug-1",
        "command": "on",
        "args": {},
        "actor": "me",
        "token_id": "t1",
        "created_ms": created_ms,
        "timeout_s": 5.0,
    }
    values.update(kwargs)
    return CommandRecord(**values)


def test_pending_sent_acked() -> None:
    tracker = CommandTracker(history_ms=60_000)
    rec = record()
    tracker.add(rec)
    tracker.mark_sent(rec, 1_010)
    assert rec.state == "sent"
    finished = tracker.on_ack("plug-1", "c1", True, None, {"relay": True}, 1_050)
    assert finished is rec and rec.state == "acked" and rec.done.is_set()
    assert tracker.device("plug-1").state == {"relay": True}
    assert tracker.device("plug-1").last_seen_ms == 1_050
    assert tracker.last_command("plug-1") is rec


def test_an_ack_that_overtakes_the_puback_still_records_when_it_was_sent() -> None:
    """Seen on compose: a command acked before its PUBACK showed sent_at null."""
    tracker = CommandTracker(history_ms=60_000)
    rec = record()
    tracker.add(rec)
    tracker.on_ack("plug-1", "c1", True, None, {"relay": True}, 1_020)
    tracker.mark_sent(rec, 1_025)
    assert rec.state == "acked" and rec.sent_ms == 1_025


def test_the_first_final_state_wins_and_a_late_ack_is_noted() -> None:
    tracker = CommandTracker(history_ms=60_000)
    rec = record()
    tracker.add(rec)
    assert tracker.finish(rec, "timed_out", 6_000, "no ack within 5 s")
    assert tracker.on_ack("plug-1", "c1", True, None, {"relay": True}, 8_000) is None
    assert rec.state == "timed_out"
    assert rec.reason == "no ack within 5 s; the device answered ok 2.0 s after the deadline"
    assert tracker.device("plug-1").state == {"relay": True}  # the device's state is still news
    assert not tracker.finish(rec, "acked", 9_000)


def test_an_ack_from_another_device_does_not_move_a_command() -> None:
    tracker = CommandTracker(history_ms=60_000)
    rec = record()
    tracker.add(rec)
    assert tracker.on_ack("plug-2", "c1", True, None, {}, 1_100) is None
    assert rec.state == "pending"


def test_a_refusal_keeps_the_reason() -> None:
    tracker = CommandTracker(history_ms=60_000)
    rec = record()
    tracker.add(rec)
    tracker.on_ack("plug-1", "c1", False, "relay stuck", {}, 1_100)
    assert (rec.state, rec.reason) == ("failed", "relay stuck")


def test_events_from_the_topic_build_mirrors() -> None:
    source = record(idempotency_key="k")
    source.state = "acked"
    source.completed_ms = 1_200
    tracker = CommandTracker(history_ms=60_000)
    command = AuditEvent.model_validate_json(command_event(source).model_dump_json())
    mirror = tracker.apply_event(command, idempotency_key="k", token_id="t1", timeout_s=5.0)
    assert mirror is not None and not mirror.owned and mirror.state == "pending"
    assert tracker.by_idempotency_key("t1", "k") is mirror
    assert tracker.apply_event(command, idempotency_key="k", token_id="t1", timeout_s=5.0) is None  # once
    outcome = AuditEvent.model_validate_json(outcome_event(source).model_dump_json())
    assert tracker.apply_event(outcome, idempotency_key=None, token_id=None, timeout_s=None) is mirror
    assert mirror.state == "acked" and mirror.completed_ms == 1_200


def test_owned_commands_ignore_their_own_echo() -> None:
    tracker = CommandTracker(history_ms=60_000)
    rec = record()
    tracker.add(rec)
    echo = outcome_event(record(state="timed_out", completed_ms=9_000))
    assert tracker.apply_event(echo, idempotency_key=None, token_id=None, timeout_s=None) is None
    assert rec.state == "pending"


def test_same_request_compares_canonical_arguments() -> None:
    rec = record(command="set_setpoint", args={"celsius": 18.5, "mode": "x"})
    assert rec.same_request("plug-1", "set_setpoint", {"mode": "x", "celsius": 18.5})
    assert not rec.same_request("plug-1", "set_setpoint", {"mode": "x", "celsius": 18.0})
    assert not rec.same_request("plug-2", "set_setpoint", {"mode": "x", "celsius": 18.5})


def test_old_final_commands_and_their_keys_are_pruned() -> None:
    tracker = CommandTracker(history_ms=10_000)
    old, unfinished, new = record("a", 1_000, idempotency_key="k"), record("b", 2_000), record("c", 20_000)
    for rec in (old, unfinished, new):
        tracker.add(rec)
    tracker.finish(old, "acked", 1_100)
    assert tracker.prune(now_ms=20_000) == 1
    assert tracker.get("a") is None and tracker.by_idempotency_key("t1", "k") is None
    assert tracker.get("b") is unfinished  # still waiting: kept until it times out
    tracker.forget_idempotency_key(new)  # no key: nothing to do


def test_waiters_wake_up_on_the_final_state() -> None:
    async def scenario() -> str:
        tracker = CommandTracker(history_ms=60_000)
        rec = record()
        tracker.add(rec)
        asyncio.get_running_loop().call_later(0.05, tracker.on_ack, "plug-1", "c1", True, None, {}, 1_100)
        await asyncio.wait_for(rec.done.wait(), 2)
        return rec.state

    assert asyncio.run(scenario()) == "acked"
