"""The JetStream buckets and streams nexec keeps its shared state in.

Agents and controllers both open the registry bucket (whichever starts first
creates it); controllers create the job and result streams and the
idempotency bucket. Nothing is kept only in one process's memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KeyValue

from schemas.subjects import Subjects

# Seconds a delete marker left by an expired registry entry stays visible to watchers.
REGISTRY_MARKER_TTL_S = 60.0
# How many times to look for a stream's new leader (about 20 s in all).
LEADER_ATTEMPTS = 45


async def open_registry(
    js: JetStreamContext, subjects: Subjects, *, replicas: int | None = None
) -> KeyValue:
    """Bind the registry bucket, creating it if it does not exist yet.

    Entries carry their own TTL (three heartbeat intervals), so the server
    removes an agent that stopped heartbeating and tells every watcher.
    ``replicas`` (controllers give it; agents do not) is also applied to a
    bucket that exists with another number, e.g. one an agent created first.

    Raises:
        nats.js.errors.Error: JetStream is not available or refused the bucket.
        nats.errors.TimeoutError: JetStream did not answer in time.
    """
    bucket = subjects.registry_bucket()
    try:
        registry = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                description="nexec live agents: hostname token -> heartbeat",
                history=1,
                storage=StorageType.MEMORY,
                replicas=replicas or 1,
                limit_marker_ttl=REGISTRY_MARKER_TTL_S,
            )
        )
    if replicas is not None:
        stream = await js.stream_info(f"KV_{bucket}")
        if stream.config.num_replicas != replicas:
            await js.update_stream(replace(stream.config, num_replicas=replicas))
            await wait_for_stream_leader(js, f"KV_{bucket}")
    return registry


async def wait_for_stream_leader(
    js: JetStreamContext, stream: str, attempts: int = LEADER_ATTEMPTS
) -> None:
    """Return once ``stream`` has a leader and every other replica is current (at
    once on a single server), so that writes right after a change of its replicas
    do not time out and the loss of one node then loses nothing.

    Raises:
        nats.errors.TimeoutError: still not so after ``attempts`` checks.
        nats.js.errors.Error: the stream does not exist.
    """
    for attempt in range(attempts):
        info = await js.stream_info(stream)
        cluster = info.cluster
        if cluster is None:
            return
        followers = cluster.replicas or []
        if (
            cluster.leader
            and len(followers) == (info.config.num_replicas or 1) - 1
            and all(peer.current for peer in followers)
        ):
            return
        await asyncio.sleep(min(0.05 * (attempt + 1), 0.5))
    raise nats.errors.TimeoutError


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
