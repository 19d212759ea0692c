"""The exceptions of the actuator, rooted at `TelestackError`.

    TelestackError
    └── ActuatorError
        ├── RegistryError            the device registry file is invalid (names the device or type); found at start
        ├── TokenStoreError          the token store cannot be read or written, or a token request is invalid
        └── RequestError             a request the API refuses; carries its HTTP status and the problems found
            ├── InvalidInput         400  ingest lines or points that cannot be parsed (one `Problem` per line)
            ├── Unauthorized         401  no bearer token, or one that is unknown, revoked or expired
            ├── Forbidden            403  the token lacks the scope (device, site, read, admin)
            ├── NotFound             404  unknown device or command
            ├── Conflict             409  an idempotency key reused for a different request
            ├── PayloadTooLarge      413  body (or its gzip content) over the limit, or too many lines
            ├── UnsupportedMedia     415  a content type or encoding the endpoint does not read
            ├── InvalidCommand       422  unknown command, unknown argument, wrong type, value out of bounds
            ├── RateLimited          429  the token used up its request budget; `retry_after_s`
            └── Unavailable          503  Kafka or the MQTT broker did not confirm in time

The HTTP layer turns every `RequestError` into the same JSON body (`ErrorBody`): ``detail`` and ``errors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from telestack.core.errors import TelestackError

__all__ = [
    "ActuatorError",
    "Conflict",
    "Forbidden",
    "InvalidCommand",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "RateLimited",
    "RegistryError",
    "RequestError",
    "TokenStoreError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMedia",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: where (`loc`, and `line` for ingest) and what (`msg`)."""

    loc: tuple[str | int, ...]
    msg: str
    line: int | None = None


class ActuatorError(TelestackError):
    """Base of the actuator's exceptions."""


class RegistryError(ActuatorError):
    """The device registry is invalid; the message names the device or type and what to fix."""


class TokenStoreError(ActuatorError):
    """The token store cannot be read or written, or a token cannot be created as asked."""


class RequestError(ActuatorError):
    """A request refused with `status`; `problems` lists what is wrong, `headers` go into the response."""

    status = 400

    def __init__(
        self,
        detail: str,
        problems: Sequence[Problem] = (),
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = tuple(problems)
        self.headers = dict(headers or {})


class InvalidInput(RequestError):
    status = 400


class Unauthorized(RequestError):
    status = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="telestack"'})


class Forbidden(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409


class PayloadTooLarge(RequestError):
    status = 413


class UnsupportedMedia(RequestError):
    status = 415


class InvalidCommand(RequestError):
    status = 422


class RateLimited(RequestError):
    status = 429

    def __init__(self, detail: str, retry_after_s: float) -> None:
        # Retry-After takes whole seconds; round up so a client that obeys it is not refused again.
        seconds = max(1, int(retry_after_s + 0.999))
        super().__init__(detail, headers={"Retry-After": str(seconds)})
        self.retry_after_s = retry_after_s


class Unavailable(RequestError):
    status = 503
