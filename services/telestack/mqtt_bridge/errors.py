"""The exceptions of the MQTT bridge, rooted at `TelestackError`.

    TelestackError
    └── MqttBridgeError
        ├── RuleError       the mapping rules file is invalid (names the rule and the key); found at start
        └── MappingError    one MQTT message cannot be mapped; it goes to the dead-letter topic with `reason`

`MappingError.reason` is one of `REASONS`; it becomes the ``reason`` header of the dead letter and the
``reason`` label of ``telestack_mqtt_bridge_dead_letters_total``.
"""

from __future__ import annotations

from typing import Literal

from telestack.core.errors import TelestackError

__all__ = ["REASONS", "MappingError", "MqttBridgeError", "Reason", "RuleError"]

Reason = Literal["unmapped", "unparseable", "invalid", "oversize", "invalid_ack", "tag_mismatch", "rejected"]
REASONS: tuple[Reason, ...] = (
    "unmapped",
    "unparseable",
    "invalid",
    "oversize",
    "invalid_ack",
    "tag_mismatch",
    "rejected",
)


class MqttBridgeError(TelestackError):
    """Base of the MQTT bridge's exceptions."""


class RuleError(MqttBridgeError):
    """A mapping rule is invalid; the message names the rule and what to fix."""


class MappingError(MqttBridgeError):
    """A message that no rule can turn into line protocol.

    - ``unmapped``: no rule matches its topic;
    - ``unparseable``: the payload is not what the rule's format expects (bad JSON, not a number, bad line protocol);
    - ``invalid``: it parsed, but a field, tag or timestamp is missing or cannot be converted;
    - ``oversize``: the payload is larger than ``mqtt_bridge.max_payload_bytes``;
    - ``invalid_ack``: a device acknowledgement that is not a valid `DeviceAck`;
    - ``tag_mismatch``: the payload names another device (or contradicts another tag the topic or the rule sets):
      the topic is the authenticated identity (the broker's ACL ties it to the login), so it is not overridden;
    - ``rejected``: Kafka refused the record it was mapped to (larger than ``message.max.bytes``...).
    """

    def __init__(self, reason: Reason, detail: str, *, rule: str | None = None) -> None:
        self.reason: Reason = reason
        self.detail = detail
        self.rule = rule
        super().__init__(f"{reason}: {detail}" + (f" (rule {rule})" if rule else ""))
