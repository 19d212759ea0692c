"""Notifiers against real local receivers: an HTTP server (webhook, SMS gateway) and an SMTP server (STARTTLS)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import queue
import time

import pytest

from telestack.alerting.notifiers import (
    AlertMessage,
    EmailConfig,
    Notification,
    NotifierWorker,
    SendResult,
    SmsConfig,
    WebhookConfig,
    build_notifier,
)
from telestack.alerting.notifiers.config import SmsAuth
from telestack.core.errors import ConfigError
from tests.alerting.conftest import HttpReceiver, SmtpServer
from tests.polling import wait_until


def notification(notifier: str = "n", *devices: str, state: str = "firing") -> Notification:
    alerts = tuple(
        AlertMessage(
            fingerprint=f"fermenter_setpoint/fermenter,device={device}",
            rule="fermenter_setpoint",
            state=state,
            severity="warning",
            labels={"device": device, "rule": "fermenter_setpoint", "severity": "warning"},
            annotations={"summary": f"Fermenteur {device} : 21.5 °C pour une consigne de 18.0 °C"},
            text=f"Fermenteur {device} : 21.5 °C pour une consigne de 18.0 °C",
            value=21.5,
            setpoint=18.0,
            active_since_ns=1_700_000_000_000_000_000,
            fired_at_ns=1_700_000_900_000_000_000,
            resolved_at_ns=None,
        )
        for device in (devices or ("f1",))
    )
    return Notification(notifier, "rule=fermenter_setpoint", {"rule": "fermenter_setpoint"}, alerts, time.time_ns())


def test_webhook_posts_json_signed_with_hmac(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HOOK_KEY", "k3y-for-tests")
    config = WebhookConfig(type="webhook", url=http_receiver.url + "/hook", hmac_secret_env="TEST_HOOK_KEY")
    notifier = build_notifier("ops", config)
    sent = notification("ops", "f1", "f2")
    notifier.send(sent)
    [request] = http_receiver.on("/hook")
    body = request.json()
    assert body["status"] == "firing" and body["receiver"] == "ops"
    assert [a["labels"]["device"] for a in body["alerts"]] == ["f1", "f2"]
    assert body["alerts"][0]["text"].startswith("Fermenteur f1 : 21.5 °C")
    assert body["alerts"][0]["dedup_key"].endswith("|firing|1700000900000000000")
    expected = hmac.new(
        b"k3y-for-tests", request.headers["X-Telestack-Timestamp"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["X-Telestack-Signature"] == f"sha256={expected}"
    assert request.headers["Idempotency-Key"] == sent.id


def test_webhook_error_status_raises(http_receiver: HttpReceiver) -> None:
    from telestack.alerting.errors import NotifierError

    http_receiver.statuses = [503]
    notifier = build_notifier("ops", WebhookConfig(type="webhook", url=http_receiver.url + "/hook"))
    with pytest.raises(NotifierError, match="HTTP 503"):
        notifier.send(notification())


def test_missing_secret_fails_at_build_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config = WebhookConfig(type="webhook", url="http://127.0.0.1:1/", hmac_secret_env="NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match=r"'ops'.*NOT_SET_ANYWHERE"):
        build_notifier("ops", config)


def test_sms_form_body_with_basic_auth_one_request_per_recipient(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMS_TOKEN", "tok-123456")
    config = SmsConfig(
        type="sms",
        url=http_receiver.url + "/Messages.json",
        recipients=["+33600000001", "+33600000002"],
        form={"To": "{to}", "From": "+33700000000", "Body": "{text}"},
        auth=SmsAuth(type="basic", username="AC123", secret_env="TEST_SMS_TOKEN"),
    )
    build_notifier("sms", config).send(notification("sms", "f1"))
    requests = http_receiver.on("/Messages.json")
    assert [r.form()["To"] for r in requests] == [["+33600000001"], ["+33600000002"]]
    assert requests[0].form()["Body"] == ["Fermenteur f1 : 21.5 °C pour une consigne de 18.0 °C"]
    assert requests[0].headers["Authorization"].startswith("Basic ")


def test_sms_json_body_bearer_and_query_params(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMS_TOKEN", "tok-123456")
    config = SmsConfig.model_validate(
        {
            "type": "sms",
            "url": http_receiver.url + "/send",
            "recipients": ["me"],
            "params": {"user": "12345678", "tag": "{status}"},
            "json": {"to": "{to}", "message": "{text}", "meta": {"count": "{count}"}},
            "auth": {"type": "bearer", "secret_env": "TEST_SMS_TOKEN"},
            "max_length": 20,
        }
    )
    build_notifier("sms", config).send(notification("sms", "f1"))
    [request] = http_receiver.on("/send")
    assert request.query == {"user": ["12345678"], "tag": ["firing"]}
    assert request.json() == {"to": "me", "message": "Fermenteur f1 : 21.…", "meta": {"count": "1"}}
    assert request.headers["Authorization"] == "Bearer tok-123456"


def test_sms_retry_skips_recipients_already_accepted(http_receiver: HttpReceiver) -> None:
    from telestack.alerting.errors import NotifierError

    config = SmsConfig(
        type="sms", url=http_receiver.url + "/s", method="GET", recipients=["a", "b"], params={"to": "{to}"}
    )
    notifier = build_notifier("sms", config)
    sent = notification("sms")
    http_receiver.statuses = [200, 500]
    with pytest.raises(NotifierError):
        notifier.send(sent)
    notifier.send(sent)
    assert [r.query["to"][0] for r in http_receiver.on("/s")] == ["a", "b", "b"]


def test_email_over_starttls_with_login(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", smtp_server.password)
    config = EmailConfig(
        type="email",
        host=smtp_server.host,
        port=smtp_server.port,
        security="starttls",
        username=smtp_server.username,
        password_env="TEST_SMTP_PASSWORD",
        sender="alertes@brasserie.example",
        to=["brasseur@brasserie.example"],
        ca_file=smtp_server.cert,
    )
    build_notifier("mail", config).send(notification("mail", "f1", "f2"))
    [envelope] = smtp_server.messages
    assert envelope.rcpt_tos == ["brasseur@brasserie.example"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "[firing] 2 alerts: fermenter_setpoint"
    body = message.get_body().get_content()
    assert "Fermenteur f2 : 21.5 °C pour une consigne de 18.0 °C" in body
    assert "value 21.5 (setpoint 18)" in body


def test_email_refuses_an_untrusted_certificate(smtp_server: SmtpServer) -> None:
    from telestack.alerting.errors import NotifierError

    config = EmailConfig(
        type="email", host=smtp_server.host, port=smtp_server.port, sender="a@b.c", to=["d@e.f"], timeout=5
    )  # no ca_file: the self-signed certificate is not trusted
    with pytest.raises(NotifierError):
        build_notifier("mail", config).send(notification("mail"))
    assert smtp_server.messages == []


def test_worker_retries_with_backoff_until_delivered(http_receiver: HttpReceiver) -> None:
    http_receiver.statuses = [500, 502]
    config = WebhookConfig(type="webhook", url=http_receiver.url + "/hook", retry_backoff=0.05, max_attempts=5)
    results: queue.Queue[SendResult] = queue.Queue()
    worker = NotifierWorker(build_notifier("ops", config), config, results).start()
    try:
        worker.submit(notification("ops"))
        result = results.get(timeout=10)
    finally:
        worker.stop()
    assert result.ok and result.attempts == 3
    times = [r.at for r in http_receiver.on("/hook")]
    assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.095  # waits 0.05 s, then 0.1 s


def test_a_failing_notifier_does_not_block_another(http_receiver: HttpReceiver) -> None:
    down = WebhookConfig(type="webhook", url="http://127.0.0.1:9/", retry_backoff=0.5, max_attempts=3, timeout=1)
    up = WebhookConfig(type="webhook", url=http_receiver.url + "/up")
    results: queue.Queue[SendResult] = queue.Queue()
    slow = NotifierWorker(build_notifier("down", down), down, results).start()
    fast = NotifierWorker(build_notifier("up", up), up, results).start()
    try:
        for i in range(3):
            slow.submit(notification("down", f"f{i}"))
            fast.submit(notification("up", f"f{i}"))
        wait_until(lambda: len(http_receiver.on("/up")) == 3, timeout_s=5, what="the healthy notifier delivered")
        assert slow.backlog() >= 2  # still busy retrying its first one
        first = results.get(timeout=5)
        assert first.notifier == "up" and first.ok
    finally:
        slow.stop(timeout_s=2)
        fast.stop()


def test_full_queue_fails_fast_instead_of_blocking() -> None:
    config = WebhookConfig(type="webhook", url="http://127.0.0.1:9/")
    results: queue.Queue[SendResult] = queue.Queue()
    worker = NotifierWorker(build_notifier("x", config), config, results, max_queue=1)  # not started
    assert worker.submit(notification("x"))
    assert not worker.submit(notification("x", "f2"))
    result = results.get_nowait()
    assert not result.ok and result.error == "queue full"


def test_a_worker_never_started_stops_cleanly() -> None:
    """A service closed while it was still opening (Kafka unreachable, SIGTERM at start) stops workers that never
    ran: that must not raise and hide the error that stopped it."""
    config = WebhookConfig(type="webhook", url="http://127.0.0.1:9/")
    worker = NotifierWorker(build_notifier("x", config), config, queue.Queue())
    worker.stop()
    worker.stop()  # and again: close is idempotent
