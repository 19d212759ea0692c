"""influx-writer: Kafka ``telemetry`` → InfluxDB 2, with commit after write, bad lines isolated to the DLQ,
long-term storage provisioning (``telestack influx-init``) and export/import of time ranges.

Modules: `batcher` (grouping records), `isolation` (finding refused records), `influx_http`
(the InfluxDB HTTP API), `flusher` (the write thread), `dead_letters` (the DLQ), `service` (the consume
loop), `provisioning` (buckets, downsampling task, tokens), `export` and `importer` (files), and one
``*command`` module per CLI command.
"""

from telestack.core.influx_http import InfluxHttp
from telestack.influx_writer.batcher import Batch, Batcher
from telestack.influx_writer.dead_letters import DeadLetter, DeadLetterQueue
from telestack.influx_writer.flusher import Flusher, FlushResult
from telestack.influx_writer.isolation import isolate_rejected
from telestack.influx_writer.service import WriterService
from telestack.influx_writer.settings import InfluxToolSettings, StorageOptions, WriterOptions, WriterSettings

__all__ = [
    "Batch",
    "Batcher",
    "DeadLetter",
    "DeadLetterQueue",
    "FlushResult",
    "Flusher",
    "InfluxHttp",
    "InfluxToolSettings",
    "StorageOptions",
    "WriterOptions",
    "WriterService",
    "WriterSettings",
    "isolate_rejected",
]
