"""Long-term storage in InfluxDB, created idempotently: a raw bucket with a retention, a downsampled bucket
filled by a Flux task (mean, min, max and count of every numeric field per window), and scoped tokens.

Run by ``telestack influx-init`` (with the operator token) before the writer starts; running it again
changes only what differs (retention, task script) and reuses the tokens it made before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telestack.core.settings import InfluxSettings
from telestack.influx_writer.errors import ProvisioningError
from telestack.influx_writer.influx_http import InfluxHttp
from telestack.influx_writer.settings import StorageOptions, duration_seconds

__all__ = ["AGGREGATES", "ProvisionResult", "Provisioner", "downsample_flux"]

# Field suffix → Flux aggregate. `temperature` becomes `temperature_mean`, `temperature_min`, ...
AGGREGATES = {"_mean": "mean", "_min": "min", "_max": "max", "_count": "count"}


def _flux_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def downsample_flux(*, raw_bucket: str, downsampled_bucket: str, org: str, storage: StorageOptions) -> str:
    """The Flux script of the downsampling task.

    Each run aggregates only the complete windows not aggregated yet: from the window after the newest one in
    the downsampled bucket to ``now`` (window-aligned; ``now`` is the run's scheduled time). So a run costs one
    window of raw data however much the bucket holds, and after missed or failed runs the next one catches up,
    at most ``downsample_lookback`` back. (``tasks.lastSuccess`` would say the same, but InfluxDB OSS 2.7 only
    provides it behind a feature flag that is off by default.) ``concurrency: 1`` asks InfluxDB to queue a
    run while the previous one is still going (InfluxDB OSS 2.7 does not enforce it: see the README). Points
    carry the window's start time.

    Late data: a window is aggregated once, ``downsample_offset`` after it ends. A point that reaches InfluxDB
    later (a CAN gateway draining its spool after a long outage) is kept in the raw bucket but is not in the
    downsampled one; a manual run of the task for a past time (``scheduledFor``) aggregates that window again.

    >>> script = downsample_flux(raw_bucket="raw", downsampled_bucket="ds", org="o", storage=StorageOptions())
    >>> "option task = {name: \\"telestack-downsample\\", every: 1m, offset: 30s, concurrency: 1}" in script
    True
    """
    window = storage.downsample_window
    branches = ",\n".join(
        f"    raw |> aggregate(fn: {fn}, suffix: {_flux_string(suffix)})" for suffix, fn in AGGREGATES.items()
    )
    task = (
        f"name: {_flux_string(storage.task_name)}, every: {storage.downsample_every}, "
        f"offset: {storage.downsample_offset}, concurrency: 1"
    )
    return f"""import "date"
import "types"

option task = {{{task}}}

stop = date.truncate(t: now(), unit: {window})
earliest = date.truncate(t: date.sub(d: {storage.downsample_lookback}, from: stop), unit: {window})
done = from(bucket: {_flux_string(downsampled_bucket)})
    |> range(start: earliest, stop: stop)
    |> keep(columns: ["_time"])
    |> group()
    |> max(column: "_time")
    |> findColumn(fn: (key) => true, column: "_time")
next = if length(arr: done) > 0 then date.add(d: {window}, to: done[0]) else earliest
// the new windows only; a manual run for a past time redoes its own window; never more than the lookback
start = if next >= stop then date.sub(d: {window}, from: stop) else next

raw = from(bucket: {_flux_string(raw_bucket)})
    |> range(start: start, stop: stop)
    |> filter(fn: (r) => types.isNumeric(v: r._value))

aggregate = (tables=<-, fn, suffix) => tables
    |> aggregateWindow(every: {window}, fn: fn, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({{r with _field: r._field + suffix}}))

union(
    tables: [
{branches},
    ],
)
    |> to(bucket: {_flux_string(downsampled_bucket)}, org: {_flux_string(org)})
"""


@dataclass
class ProvisionResult:
    org_id: str
    buckets: dict[str, str]  # name → id
    task_id: str
    writer_token: str
    reader_token: str
    changes: list[str] = field(default_factory=list)  # what this run created or updated


class Provisioner:
    """Brings buckets, task and tokens to the state the settings describe."""

    def __init__(self, api: InfluxHttp, influx: InfluxSettings, storage: StorageOptions) -> None:
        self.api = api
        self.influx = influx
        self.storage = storage

    def run(self) -> ProvisionResult:
        org_id = self._org_id()
        changes: list[str] = []
        raw = self._bucket(org_id, self.influx.bucket, self.storage.raw_retention, changes)
        downsampled = self._bucket(org_id, self.storage.downsampled_bucket, self.storage.downsampled_retention, changes)
        flux = downsample_flux(
            raw_bucket=self.influx.bucket,
            downsampled_bucket=self.storage.downsampled_bucket,
            org=self.influx.org,
            storage=self.storage,
        )
        task_id = self._task(org_id, flux, changes)
        writer = self._token(
            org_id,
            self.storage.writer_token_description,
            [_permission("write", org_id, raw)],
            changes,
        )
        reader = self._token(
            org_id,
            self.storage.reader_token_description,
            [_permission("read", org_id, raw), _permission("read", org_id, downsampled)],
            changes,
        )
        return ProvisionResult(
            org_id=org_id,
            buckets={self.influx.bucket: raw, self.storage.downsampled_bucket: downsampled},
            task_id=task_id,
            writer_token=writer,
            reader_token=reader,
            changes=changes,
        )

    def _org_id(self) -> str:
        orgs = self.api.api("GET", "/api/v2/orgs", params={"org": self.influx.org}).get("orgs", [])
        if not orgs:
            raise ProvisioningError(f"organization {self.influx.org!r} does not exist (influx.org)")
        return str(orgs[0]["id"])

    def _bucket(self, org_id: str, name: str, retention: str, changes: list[str]) -> str:
        seconds = duration_seconds(retention)
        rules = [{"type": "expire", "everySeconds": seconds}] if seconds else []
        listing = self.api.api("GET", "/api/v2/buckets", params={"orgID": org_id, "name": name}, missing_ok=True)
        found = (listing or {}).get("buckets", [])
        if not found:
            created = self.api.api(
                "POST",
                "/api/v2/buckets",
                json_body={"orgID": org_id, "name": name, "retentionRules": rules, "description": "telestack"},
            )
            changes.append(f"created bucket {name} (retention {retention})")
            return str(created["id"])
        bucket = found[0]
        current = next((r.get("everySeconds", 0) for r in bucket.get("retentionRules", [])), 0)
        if current != seconds:
            self.api.api("PATCH", f"/api/v2/buckets/{bucket['id']}", json_body={"retentionRules": rules})
            changes.append(f"changed retention of bucket {name} to {retention}")
        return str(bucket["id"])

    def _task(self, org_id: str, flux: str, changes: list[str]) -> str:
        name = self.storage.task_name
        found = self.api.api("GET", "/api/v2/tasks", params={"orgID": org_id, "name": name}).get("tasks", [])
        found = [t for t in found if t.get("name") == name]
        if not found:
            task = self.api.api(
                "POST",
                "/api/v2/tasks",
                json_body={"orgID": org_id, "flux": flux, "status": "active", "description": "telestack downsampling"},
            )
            changes.append(f"created task {name}")
            return str(task["id"])
        task = found[0]
        if task.get("flux") != flux or task.get("status") != "active":
            self.api.api("PATCH", f"/api/v2/tasks/{task['id']}", json_body={"flux": flux, "status": "active"})
            changes.append(f"updated task {name}")
        return str(task["id"])

    def _token(self, org_id: str, description: str, permissions: list[dict[str, Any]], changes: list[str]) -> str:
        listing = self.api.api("GET", "/api/v2/authorizations", params={"orgID": org_id}).get("authorizations", [])
        wanted = _permission_keys(permissions)
        for auth in listing:
            if auth.get("description") != description:
                continue
            if auth.get("status") == "active" and _permission_keys(auth.get("permissions", [])) == wanted:
                token = auth.get("token")
                if token:
                    return str(token)
            # Same name, other scope (a bucket was recreated) or no longer readable: replace it.
            self.api.api("DELETE", f"/api/v2/authorizations/{auth['id']}")
            changes.append(f"removed outdated token {description!r}")
        created = self.api.api(
            "POST",
            "/api/v2/authorizations",
            json_body={"orgID": org_id, "description": description, "permissions": permissions, "status": "active"},
        )
        changes.append(f"created token {description!r}")
        return str(created["token"])


def _permission(action: str, org_id: str, bucket_id: str) -> dict[str, Any]:
    return {"action": action, "resource": {"type": "buckets", "id": bucket_id, "orgID": org_id}}


def _permission_keys(permissions: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (p.get("action", ""), p.get("resource", {}).get("type", ""), p.get("resource", {}).get("id", ""))
        for p in permissions
    }
