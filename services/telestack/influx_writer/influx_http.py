"""The InfluxDB HTTP client moved to `telestack.core.influx_http`; this name stays for provisioning, which
imports it (being changed on another branch): switch that import, then remove this module."""

from telestack.core.influx_http import InfluxHttp, error_for_response, influx_message, parse_retry_after

__all__ = ["InfluxHttp", "error_for_response", "influx_message", "parse_retry_after"]
