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
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KeyValue

from schemas.subjects import Subjects

log = logging.getLogger("nexec.jetstream")

# How many times to look for a stream's new leader (about 20 s in all).
LEADER_ATTEMPTS = 45
# JetStream API error codes that mean "no room": insufficient resources (server or
# account storage exhausted), account resource limits exceeded, and a store failure,
# which with our limits is a stream's max_bytes ("maximum bytes exceeded").
_NO_ROOM_ERR_CODES = frozenset({10023, 10002, 10047, 10028})
_NO_ROOM_TEXTS = ("maximum bytes exceeded", "insufficient", "resource limits exceeded")


def is_storage_full(exc: BaseException) -> bool:
    """Whether JetStream refused a write because the stream, the account or the server
    has no room left (as opposed to being unreachable or refusing it for another reason)."""
    if not isinstance(exc, nats.js.errors.APIError):
        return False
    description = (exc.description or "").lower()
    return exc.err_code in _NO_ROOM_ERR_CODES or any(t in description for t in _NO_ROOM_TEXTS)


WRONG_LAST_SEQUENCE_ERR_CODE = 10071
"""JetStream's answer to a write whose ``Nats-Expected-Last-Subject-Sequence`` header
no longer holds: another message was stored on that subject meanwhile."""


def is_wrong_last_sequence(exc: BaseException) -> bool:
    """Whether JetStream refused a conditional write because the subject changed (as
    opposed to having no room, or any other refusal)."""
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code == WRONG_LAST_SEQUENCE_ERR_CODE


async def ensure_registry(
    js: JetStreamContext, subjects: Subjects, *, replicas: int, max_bytes: int | None = None
) -> KeyValue:
    """Bind the registry bucket, creating it if it does not exist (controllers only:
    agents never create a stream or a bucket; they retry their heartbeat until one of
    the controllers made it).

    The bucket is file-backed, so it survives a nats-server restart, and refuses
    rollup headers, so that an agent, which may write its own key, cannot purge the
    others' with one ``Nats-Rollup: all`` write. A bucket without these properties
    (an earlier version's) is replaced: its entries come back with the agents' next
    heartbeats. Entries carry their own TTL (three heartbeat intervals), so the server
    removes an agent that stopped heartbeating; it leaves no delete marker (those
    would need rollups), and a controller's view expires the agent by its own clock
    anyway. An existing bucket is brought to ``replicas`` and ``max_bytes``.

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
    if info is not None and (
        info.config.storage is StorageType.MEMORY or info.config.allow_rollup_hdrs
    ):
        log.warning("registry bucket %s replaced: file-backed, without rollups", bucket)
        await js.delete_stream(stream)
        info = None
    if info is None:
        await js.add_stream(registry_stream_config(subjects, replicas, max_bytes))
    else:
        await bring_stream_to(js, stream, replicas=replicas, max_bytes=max_bytes)
    return await js.key_value(bucket)


def registry_stream_config(
    subjects: Subjects, replicas: int, max_bytes: int | None
) -> StreamConfig:
    """The registry bucket's stream: what ``create_key_value`` makes for a bucket of
    history 1, but file-backed and without rollup headers."""
    bucket = subjects.registry_bucket()
    return StreamConfig(
        name=f"KV_{bucket}",
        description="nexec live agents: hostname token -> heartbeat",
        subjects=[subjects.registry_entries_all()],
        allow_direct=True,
        allow_rollup_hdrs=False,
        allow_msg_ttl=True,
        deny_delete=True,
        deny_purge=True,
        discard=DiscardPolicy.NEW,
        max_msgs_per_subject=1,
        max_bytes=max_bytes or -1,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def ensure_bucket(
    js: JetStreamContext,
    name: str,
    *,
    description: str,
    replicas: int,
    max_bytes: int | None,
    ttl_s: float | None = None,
) -> KeyValue:
    """Bind the file-backed KV bucket ``name`` of history 1, brought to ``max_bytes``,
    or create it (entries expire after ``ttl_s`` when given).

    Raises:
        nats.js.errors.Error: JetStream refused the configuration.
        nats.errors.TimeoutError: JetStream did not answer in time.
    """
    try:
        bucket = await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        config = KeyValueConfig(
            bucket=name,
            description=description,
            history=1,
            ttl=ttl_s,
            storage=StorageType.FILE,
            replicas=replicas,
            max_bytes=max_bytes or -1,
        )
        return await js.create_key_value(config)
    await bring_stream_to(js, f"KV_{name}", replicas=None, max_bytes=max_bytes)
    return bucket


async def bring_stream_to(
    js: JetStreamContext, stream: str, *, replicas: int | None, max_bytes: int | None
) -> None:
    """Update an existing stream (a KV bucket's) to the replicas and ``max_bytes`` given
    (None: leave as is); wait for its leader when the replicas changed.

    Raises:
        nats.js.errors.Error: JetStream refused the change or the stream does not exist.
        nats.errors.TimeoutError: JetStream did not answer in time.
    """
    if replicas is None and max_bytes is None:
        return
    config = (await js.stream_info(stream)).config
    wanted = replace(
        config,
        num_replicas=config.num_replicas if replicas is None else replicas,
        max_bytes=config.max_bytes if max_bytes is None else max_bytes,
    )
    if wanted != config:
        await js.update_stream(wanted)
        if wanted.num_replicas != config.num_replicas:
            await wait_for_stream_leader(js, stream)


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


KV_DELETE_HEADERS = {"KV-Operation": "DEL"}
"""Headers that make a write to a key's subject a delete marker (as ``KeyValue.delete``)."""


def record_stream_configs(
    subjects: Subjects,
    *,
    retention_s: float,
    replicas: int,
    jobs_max_bytes: int,
    results_max_bytes: int,
) -> list[StreamConfig]:
    """The job-record stream and the results stream, both kept for ``retention_s``
    and at most their ``max_bytes``.

    Both refuse new messages when full (``DiscardPolicy.NEW``) rather than drop the
    oldest: a record the caller saw never disappears before its retention, and the
    controller answers new jobs ``503 storage full`` (docs/operations.md).

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
            max_bytes=jobs_max_bytes,
            discard=DiscardPolicy.NEW,
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
            max_bytes=results_max_bytes,
            discard=DiscardPolicy.NEW,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
        ),
    ]
