"""Settings of the influx-writer service and of its tools (``influx-init``, ``export``, ``import``).

One YAML section, ``influx_writer``, holds the writer's options and, under ``storage``, the long-term
storage layout that ``telestack influx-init`` provisions (buckets, tokens) and ``telestack downsample`` fills::

    influx_writer:
      batch_lines: 5000
      batch_delay_ms: 200
      storage:
        raw_retention: 30d
        downsampled_bucket: telemetry_1m
"""

from __future__ import annotations

from pydantic import Field, field_validator

from telestack.core.durations import duration_seconds, duration_text
from telestack.core.ports import SERVICE_PORTS
from telestack.core.settings import HttpSettings, InfluxSettings, Section, TelestackSettings

__all__ = [
    "DownsamplerOptions",
    "DownsamplerSettings",
    "InfluxToolSettings",
    "StorageOptions",
    "WriterOptions",
    "WriterSettings",
    "duration_seconds",  # re-exported from telestack.core.durations
]


def _check_duration(value: str, *, forever_ok: bool) -> str:
    """The duration as Flux reads it (`telestack.core.durations`): ``1h30m``; ``0``/``inf`` when `forever_ok`."""
    text = duration_text(value, forever_ok=forever_ok)
    if duration_seconds(text) == 0 and not forever_ok:
        raise ValueError("must be a positive duration such as 1m")
    return text


class StorageOptions(Section):
    """Long-term storage provisioned by ``telestack influx-init``: the raw bucket is ``influx.bucket``."""

    raw_retention: str = Field("30d", description="how long raw points are kept (e.g. 30d; 0 or inf: forever)")
    downsampled_bucket: str = Field("telemetry_1m", description="bucket the downsampling task writes into")
    downsampled_retention: str = Field(
        "0", description="how long downsampled points are kept (e.g. 1825d; 0 or inf: forever)"
    )
    downsample_window: str = Field(
        "1m", description="aggregation window: one mean/min/max/count per numeric field and window"
    )
    downsample_every: str = Field(
        "1m", description="how often telestack downsample looks for closed windows (it never overlaps itself)"
    )
    downsample_offset: str = Field(
        "30s", description="how long after its end a window is first aggregated (points up to this late are in it)"
    )
    downsample_late_windows: int = Field(
        5,
        ge=0,
        le=1440,
        description="each window is aggregated again this many windows later, with the points that came late "
        "(later ones stay raw-only until telestack downsample --redo); 0: aggregated once",
    )
    downsample_lookback: str = Field(
        "1h", description="where the first run starts, back from now, when the downsampled bucket has no watermark"
    )
    downsample_catchup: str = Field(
        "7d", description="after the downsampler was stopped, how far back it catches up at most"
    )
    task_name: str = Field(
        "telestack-downsample",
        description="name of the InfluxDB task earlier versions created; influx-init deletes it",
    )
    writer_token_description: str = Field(
        "telestack influx-writer: write raw telemetry", description="description of the writer's scoped token"
    )
    downsampler_token_description: str = Field(
        "telestack downsample: read raw, write downsampled telemetry",
        description="description of the downsampler's scoped token",
    )
    reader_token_description: str = Field(
        "telestack readers: read raw and downsampled telemetry",
        description="description of the read-only token (Grafana, alerting, export)",
    )

    @field_validator("raw_retention", "downsampled_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        return _check_duration(value, forever_ok=True)

    @field_validator(
        "downsample_window", "downsample_every", "downsample_offset", "downsample_lookback", "downsample_catchup"
    )
    @classmethod
    def _positive(cls, value: str) -> str:
        if value == "0s":
            return value
        return _check_duration(value, forever_ok=False)


class WriterOptions(Section):
    """The ``influx_writer`` section."""

    group_id: str = Field("telestack-influx-writer", description="Kafka consumer group shared by the replicas")
    batch_lines: int = Field(5_000, ge=1, description="a batch is written when it holds this many lines")
    batch_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="... or this many bytes of line protocol (uncompressed)"
    )
    batch_delay_ms: int = Field(200, ge=1, description="... or when its first record is this old, ms")
    gzip_level: int = Field(1, ge=0, le=9, description="gzip level of write requests (0: no compression)")
    max_in_flight: int = Field(
        8, ge=1, le=16, description="batches queued for or being written; past it consumption pauses"
    )
    write_concurrency: int = Field(
        4, ge=1, le=8, description="write requests to InfluxDB at once (offsets are still stored in order)"
    )
    min_write_lines: int = Field(
        100, ge=1, description="smallest write request when InfluxDB is slow (halved from batch_lines on timeouts)"
    )
    max_write_timeout_ms: int = Field(
        120_000, ge=100, description="longest write timeout when InfluxDB is slow (doubled from influx.timeout_ms)"
    )
    retry_initial_ms: int = Field(200, ge=1, description="first delay before retrying a failed write, ms")
    retry_max_ms: int = Field(5_000, ge=1, description="cap of the exponential retry delay, ms")
    revoke_wait_ms: int = Field(
        10_000, ge=0, description="on partition revoke, how long to wait for in-flight batches to finish, ms"
    )
    drain_timeout_ms: int = Field(20_000, ge=0, description="on shutdown, how long to wait for in-flight writes, ms")
    http: HttpSettings = Field(
        default_factory=lambda: HttpSettings(port=SERVICE_PORTS["influx-writer"]), description="/healthz and /metrics"
    )
    storage: StorageOptions = Field(default_factory=lambda: StorageOptions())


class WriterSettings(TelestackSettings):
    """Everything ``telestack influx-writer`` reads."""

    influx: InfluxSettings = Field(default_factory=lambda: InfluxSettings())
    influx_writer: WriterOptions = Field(default_factory=lambda: WriterOptions())


class InfluxToolSettings(TelestackSettings):
    """What ``telestack influx-init``, ``export`` and ``import`` read: InfluxDB and the storage layout."""

    influx: InfluxSettings = Field(default_factory=lambda: InfluxSettings())
    influx_writer: WriterOptions = Field(default_factory=lambda: WriterOptions())


class DownsamplerOptions(Section):
    """The ``downsampler`` section: how ``telestack downsample`` runs (what: ``influx_writer.storage``)."""

    query_timeout_s: float = Field(
        300.0, gt=0, description="how long one window's aggregation query may take before it is retried, s"
    )
    retry_initial_ms: int = Field(500, ge=1, description="first delay before retrying a failed query, ms")
    retry_max_ms: int = Field(30_000, ge=1, description="cap of the exponential retry delay, ms")
    max_window_attempts: int = Field(
        3, ge=1, description="a window InfluxDB refuses this many times is skipped (logged, counted)"
    )
    http: HttpSettings = Field(
        default_factory=lambda: HttpSettings(port=SERVICE_PORTS["downsampler"]), description="/healthz and /metrics"
    )


class DownsamplerSettings(InfluxToolSettings):
    """Everything ``telestack downsample`` reads."""

    downsampler: DownsamplerOptions = Field(default_factory=lambda: DownsamplerOptions())
