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


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one to ``config``.

    Raises:
        nats.js.errors.Error: JetStream refused the configuration.
        nats.errors.TimeoutError: JetStream did not answer in time.
    """
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)


def registry_entry_subject(subjects: Subjects, hostname: str) -> str:
    """The subject a heartbeat is published on to set the agent's registry entry."""
    return f"$KV.{subjects.registry_bucket()}.{subjects.registry_key(hostname)}"


def record_stream_configs(
    subjects: Subjects, *, retention_s: float, replicas: int
) -> list[StreamConfig]:
    """The job-record stream and the results stream, both kept for ``retention_s``.

    The results stream holds each host's result and its live output chunks, so
    that one consumer reads a job's events in the order they were recorded. A
    host's later result (an agent's) replaces an earlier one (a controller's
    ``no_reply``) for readers, which take the last per host.
    """
    return [
        StreamConfig(
            name=subjects.jobs_stream(),
            description="nexec job records",
            subjects=[subjects.job_records_all()],
            max_age=retention_s,
            max_msgs_per_subject=1,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
        ),
        StreamConfig(
            name=subjects.results_stream(),
            description="nexec per-host results and live output",
            subjects=[subjects.result_records_all(), subjects.output_records_all()],
            max_age=retention_s,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
        ),
    ]
