"""Classification of InfluxDB answers and the request the writer sends (against a mock transport)."""

from __future__ import annotations

import gzip

import httpx
import pytest

from telestack.core.errors import InfluxAuthError, InfluxRejectedError, InfluxUnavailableError
from telestack.core.influx_http import InfluxHttp, error_for_response, parse_retry_after
from telestack.core.settings import InfluxSettings


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InfluxRejectedError),
        (413, InfluxRejectedError),
        (422, InfluxRejectedError),
        (401, InfluxAuthError),
        (403, InfluxAuthError),
        (404, InfluxUnavailableError),
        (429, InfluxUnavailableError),
        (500, InfluxUnavailableError),
        (503, InfluxUnavailableError),
    ],
)
def test_status_classes(status: int, kind: type[Exception]) -> None:
    error = error_for_response(status, '{"code":"x","message":"why"}', None)
    assert isinstance(error, kind)
    assert error.status == status
    assert "why" in str(error)


def test_rejection_keeps_influxdb_text_as_reason() -> None:
    error = error_for_response(400, '{"code":"invalid","message":"unable to parse \'m v=\': missing field value"}', "")
    assert isinstance(error, InfluxRejectedError)
    assert error.reason == "unable to parse 'm v=': missing field value"


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("garbage") is None
    error = error_for_response(503, "", "5")
    assert isinstance(error, InfluxUnavailableError)
    assert error.retry_after_s == 5.0


def test_write_sends_gzip_line_protocol_with_token_org_bucket_and_ns_precision() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    settings = InfluxSettings(url="http://influx:8086", org="acme", bucket="raw", token="tok-123456")  # type: ignore[arg-type]
    client = InfluxHttp(settings, gzip_level=1, transport=httpx.MockTransport(handler))
    client.write(b"m v=1 1\nm v=2 2")
    (request,) = seen
    assert request.url.path == "/api/v2/write"
    assert dict(request.url.params) == {"org": "acme", "bucket": "raw", "precision": "ns"}
    assert request.headers["Authorization"] == "Token tok-123456"
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.content) == b"m v=1 1\nm v=2 2"


def test_connection_refused_is_transient() -> None:
    settings = InfluxSettings(url="http://127.0.0.1:1", token="tok-123456", timeout_ms=500)  # type: ignore[arg-type]
    client = InfluxHttp(settings)
    with pytest.raises(InfluxUnavailableError, match="unreachable"):
        client.write(b"m v=1")
    client.close()
