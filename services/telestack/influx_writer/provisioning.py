"""Long-term storage in InfluxDB, created idempotently: a raw bucket with a retention, a downsampled bucket
(filled by ``telestack downsample``, see `telestack.influx_writer.downsampling`), and scoped tokens.

Run by ``telestack influx-init`` (with the operator token) before the services start; running it again
changes only what differs (retention) and reuses the tokens it made before. The InfluxDB downsampling task
that earlier versions created (``storage.task_name``) is deleted: InfluxDB OSS let its runs overlap, and
``telestack downsample`` does its work now; an upgraded stack must not run both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telestack.core.durations import duration_seconds
from telestack.core.influx_http import InfluxHttp
from telestack.core.settings import InfluxSettings
from telestack.influx_writer.errors import ProvisioningError
from telestack.influx_writer.settings import StorageOptions

__all__ = ["ProvisionResult", "Provisioner"]


@dataclass
class ProvisionResult:
    org_id: str
    buckets: dict[str, str]  # name → id
    writer_token: str
    reader_token: str
    downsampler_token: str
    changes: list[str] = field(default_factory=list)  # what this run created or updated


class Provisioner:
    """Brings buckets and tokens to the state the settings describe (and removes the legacy task)."""

    def __init__(self, api: InfluxHttp, influx: InfluxSettings, storage: StorageOptions) -> None:
        self.api = api
        self.influx = influx
        self.storage = storage

    def run(self) -> ProvisionResult:
        org_id = self._org_id()
        changes: list[str] = []
        raw = self._bucket(org_id, self.influx.bucket, self.storage.raw_retention, changes)
        downsampled = self._bucket(org_id, self.storage.downsampled_bucket, self.storage.downsampled_retention, changes)
        self._remove_legacy_task(org_id, changes)
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
        downsampler = self._token(
            org_id,
            self.storage.downsampler_token_description,
            [
                _permission("read", org_id, raw),
                _permission("read", org_id, downsampled),
                _permission("write", org_id, downsampled),
            ],
            changes,
        )
        return ProvisionResult(
            org_id=org_id,
            buckets={self.influx.bucket: raw, self.storage.downsampled_bucket: downsampled},
            writer_token=writer,
            reader_token=reader,
            downsampler_token=downsampler,
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

    def _remove_legacy_task(self, org_id: str, changes: list[str]) -> None:
        """Delete the downsampling task earlier versions created (``telestack downsample`` replaces it)."""
        name = self.storage.task_name
        found = self.api.api("GET", "/api/v2/tasks", params={"orgID": org_id, "name": name}).get("tasks", [])
        for task in found:
            if task.get("name") == name:
                self.api.api("DELETE", f"/api/v2/tasks/{task['id']}", missing_ok=True)
                changes.append(f"removed the InfluxDB task {name} (telestack downsample replaces it)")

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
