"""InfluxDB 2 HTTP API over one keep-alive httpx client: gzip line protocol writes, streamed Flux queries,
and the JSON calls provisioning needs. Every answer is classified here into `InfluxError`'s subtree
(`telestack.core.errors`): refused (`InfluxRejectedError`, `InfluxAuthError`: sending again cannot help) or
transient (`InfluxUnavailableError`: retry, honouring Retry-After). The writer, alerting's annotations, export
and import use it.

Raw line protocol goes straight from Kafka into the request body: no parsing into points and back
(influxdb-client's write API does that, and costs more CPU than the rest of the writer; see the note in
``benchmarks/writer.py``).

>>> error_for_response(204, "", None) is None
True
>>> type(error_for_response(422, '{"code":"unprocessable entity","message":"field type conflict"}', None)).__name__
'InfluxRejectedError'
>>> error_for_response(429, "", "7").retry_after_s
7.0
"""

from __future__ import annotations

import csv
import email.utils
import gzip
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from telestack.core.errors import InfluxAuthError, InfluxError, InfluxRejectedError, InfluxUnavailableError
from telestack.core.settings import InfluxSettings

__all__ = ["InfluxHttp", "error_for_response", "influx_message", "parse_retry_after"]

# Statuses that mean "the data is refused": 400 bad line protocol, 413 too large, 422 type conflict or
# out of retention. Anything else that is not 2xx, 401 or 403 is treated as transient and retried.
REJECTED_STATUSES = frozenset({400, 413, 422})
AUTH_STATUSES = frozenset({401, 403})


def influx_message(text: str) -> str:
    """The ``message`` of InfluxDB's JSON error body, or the body itself.

    >>> influx_message('{"code":"invalid","message":"unable to parse \\'x\\': missing fields"}')
    "unable to parse 'x': missing fields"
    """
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return text.strip()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None when absent or unreadable.

    >>> parse_retry_after("12"), parse_retry_after(None), parse_retry_after("soon")
    (12.0, None, None)
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_response(status: int, text: str, retry_after: str | None) -> InfluxError | None:
    """None for a 2xx answer, else the exception that says what to do about it."""
    if 200 <= status < 300:
        return None
    message = influx_message(text) or f"HTTP {status}"
    if status in REJECTED_STATUSES:
        return InfluxRejectedError(message, status=status)
    if status in AUTH_STATUSES:
        what = "token refused" if status == 401 else "token lacks permission"
        return InfluxAuthError(f"InfluxDB {status} ({what}): {message}", status=status)
    return InfluxUnavailableError(
        f"InfluxDB answered {status}: {message}", status=status, retry_after_s=parse_retry_after(retry_after)
    )


class InfluxHttp:
    """One InfluxDB server, one token, one pooled keep-alive connection set."""

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        token: str | None = None,
        gzip_level: int = 1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.gzip_level = gzip_level
        self._token = token if token is not None else settings.require_token()
        self._client = httpx.Client(
            base_url=settings.url.rstrip("/"),
            headers={"Authorization": f"Token {self._token}"},
            timeout=httpx.Timeout(settings.timeout_ms / 1000),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            transport=transport,
        )

    # --- writes ---------------------------------------------------------------------------------------

    def write(
        self, body: bytes, *, bucket: str | None = None, org: str | None = None, timeout_s: float | None = None
    ) -> None:
        """Write line protocol (nanosecond timestamps). Raises `InfluxError` subclasses; returns on 2xx.

        `timeout_s` replaces ``influx.timeout_ms`` for this request (the writer adapts it to InfluxDB's pace).
        """
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_level > 0:
            body = gzip.compress(body, compresslevel=self.gzip_level)
            headers["Content-Encoding"] = "gzip"
        params = {"org": org or self.settings.org, "bucket": bucket or self.settings.bucket, "precision": "ns"}
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": httpx.Timeout(timeout_s)}
        response = self._send("POST", "/api/v2/write", params=params, content=body, headers=headers, **extra)
        error = error_for_response(response.status_code, response.text, response.headers.get("Retry-After"))
        if error is not None:
            raise error

    # --- queries --------------------------------------------------------------------------------------

    @contextmanager
    def query_csv(
        self, flux: str, *, now: str | None = None, timeout_s: float | None = None
    ) -> Iterator[Iterator[list[str]]]:
        """Run a Flux query; yields an iterator of annotated-CSV rows, read from the socket as they come.

        `timeout_s` replaces ``influx.timeout_ms`` for this query (downsampling queries may take longer).
        """
        payload: dict[str, Any] = {
            "query": flux,
            "type": "flux",
            "dialect": {"header": True, "annotations": ["datatype", "group", "default"], "delimiter": ","},
        }
        if now is not None:
            payload["now"] = now
        request = self._client.build_request(
            "POST",
            "/api/v2/query",
            params={"org": self.settings.org},
            json=payload,
            headers={"Accept": "application/csv", "Accept-Encoding": "gzip"},
            timeout=httpx.USE_CLIENT_DEFAULT if timeout_s is None else httpx.Timeout(timeout_s),
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        try:
            if response.status_code >= 300:
                response.read()
                error = error_for_response(response.status_code, response.text, response.headers.get("Retry-After"))
                assert error is not None
                raise error
            lines = (line + "\n" for line in response.iter_lines())
            try:
                yield csv.reader(lines)
            except httpx.HTTPError as exc:
                raise _transport_error(exc) from exc
        finally:
            response.close()

    # --- JSON API (provisioning) ----------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        content: str | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Call a JSON endpoint of /api/v2; returns the decoded answer (None for 204, or 404 if `missing_ok`)."""
        response = self._send(method, path, json=json_body, params=params, content=content)
        if missing_ok and response.status_code == 404:
            return None
        error = error_for_response(response.status_code, response.text, response.headers.get("Retry-After"))
        if error is not None:
            raise error
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def health(self) -> tuple[bool, str]:
        """(ready, detail) from GET /health, which needs no token."""
        try:
            response = self._client.get("/health", timeout=2)
        except httpx.HTTPError as exc:
            return False, f"unreachable: {exc}"
        return response.status_code == 200, f"HTTP {response.status_code}"

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc


def _transport_error(exc: httpx.HTTPError) -> InfluxUnavailableError:
    timed_out = isinstance(exc, httpx.TimeoutException)
    kind = "timed out" if timed_out else "unreachable"
    return InfluxUnavailableError(f"InfluxDB {kind}: {type(exc).__name__}: {exc}", timed_out=timed_out)
