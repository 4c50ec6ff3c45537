"""The JetStream buckets and streams nexec keeps its shared state in.

Agents and controllers both open the registry bucket (whichever starts first
creates it); controllers create the job and result streams and the
idempotency bucket. Nothing is kept only in one process's memory.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KeyValue

from schemas.subjects import Subjects

log = logging.getLogger("nexec.jetstream")

# Seconds a delete marker left by an expired registry entry stays visible to watchers.
REGISTRY_MARKER_TTL_S = 60.0
# How many times to look for a stream's new leader (about 20 s in all).
LEADER_ATTEMPTS = 45


async def ensure_registry(js: JetStreamContext, subjects: Subjects, *, replicas: int) -> KeyValue:
    """Bind the registry bucket, creating it if it does not exist (controllers only:
    agents never create a stream or a bucket; they retry their heartbeat until one of
    the controllers made it).

    The bucket is file-backed, so it survives a nats-server restart; a memory-backed
    one from an earlier version is replaced (its entries come back with the agents'
    next heartbeats). Entries carry their own TTL (three heartbeat intervals), so the
    server removes an agent that stopped heartbeating and tells every watcher. An
    existing bucket is brought to ``replicas``.

    Raises:
        nats.js.errors.Error: JetStream is not available or refused the bucket.
        nats.errors.TimeoutError: JetStream did not answer in time.
    """
    bucket = subjects.registry_bucket()
    stream = f"KV_{bucket}"
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        info = None
    if info is not None and info.config.storage is StorageType.MEMORY:
        log.warning(
            "registry bucket %s is memory-backed: replacing it with a file-backed one", bucket
        )
        await js.delete_key_value(bucket)
        info = None
    if info is None:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                description="nexec live agents: hostname token -> heartbeat",
                history=1,
                storage=StorageType.FILE,
                replicas=replicas,
                limit_marker_ttl=REGISTRY_MARKER_TTL_S,
            )
        )
    if info.config.num_replicas != replicas:
        await js.update_stream(replace(info.config, num_replicas=replicas))
        await wait_for_stream_leader(js, stream)
    return await js.key_value(bucket)


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
    """The subject a heartbeat is published on to set the agent's registry entry (and
    an empty message with :data:`KV_DELETE_HEADERS` to delete it)."""
    return f"$KV.{subjects.registry_bucket()}.{subjects.registry_key(hostname)}"


KV_DELETE_HEADERS = {"KV-Operation": "DEL"}
"""Headers that make a write to a key's subject a delete marker (as ``KeyValue.delete``)."""


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
