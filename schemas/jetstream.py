"""The JetStream buckets and streams nexec keeps its shared state in.

Agents and controllers both open the registry bucket (whichever starts first
creates it); controllers create the job and result streams and the
idempotency bucket. Nothing is kept only in one process's memory.
"""

from __future__ import annotations

import contextlib

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KeyValue

from schemas.subjects import Subjects

# Seconds a delete marker left by an expired registry entry stays visible to watchers.
REGISTRY_MARKER_TTL_S = 60.0


async def open_registry(js: JetStreamContext, subjects: Subjects, *, replicas: int = 1) -> KeyValue:
    """Bind the registry bucket, creating it if it does not exist yet.

    Entries carry their own TTL (three heartbeat intervals), so the server
    removes an agent that stopped heartbeating and tells every watcher.

    Raises:
        nats.js.errors.Error: JetStream is not available or refused the bucket.
        nats.errors.TimeoutError: JetStream did not answer in time.
    """
    bucket = subjects.registry_bucket()
    with contextlib.suppress(nats.js.errors.BucketNotFoundError):
        return await js.key_value(bucket)
    return await js.create_key_value(
        KeyValueConfig(
            bucket=bucket,
            description="nexec live agents: hostname token -> heartbeat",
            history=1,
            storage=StorageType.MEMORY,
            replicas=replicas,
            limit_marker_ttl=REGISTRY_MARKER_TTL_S,
        )
    )


def registry_entry_subject(subjects: Subjects, hostname: str) -> str:
    """The subject a heartbeat is published on to set the agent's registry entry."""
    return f"$KV.{subjects.registry_bucket()}.{subjects.registry_key(hostname)}"


def record_stream_configs(
    subjects: Subjects, *, retention_s: float, replicas: int
) -> list[StreamConfig]:
    """The job-record and result streams, both kept for ``retention_s`` seconds.

    One message per subject: a job's record, a host's result of a job.
    """

    def stream(name: str, description: str, subject: str) -> StreamConfig:
        return StreamConfig(
            name=name,
            description=description,
            subjects=[subject],
            max_age=retention_s,
            max_msgs_per_subject=1,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
        )

    return [
        stream(subjects.jobs_stream(), "nexec job records", subjects.job_records_all()),
        stream(subjects.results_stream(), "nexec per-host results", subjects.result_records_all()),
    ]
