"""Idempotency keys: a repeated request returns the job it started the first time.

The pair (API key name, ``Idempotency-Key`` header) maps to the job id and a
hash of the request in a KV bucket kept as long as the job records. The first
request to claim a pair creates the entry atomically; a later one with the same
request gets that job id back, one with a different request gets 409.
"""

from __future__ import annotations

import hashlib
import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from controller.errors import Conflict, NatsUnavailable, nats_errors
from runtime.jetstream import ensure_bucket
from schemas.decoding import WireError, decode_idempotency_claim
from schemas.messages import IdempotencyClaim, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.idempotency")


class IdempotencyKeys:
    """Claims of idempotency keys; every method may raise :class:`NatsUnavailable`."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self._js = js
        self._subjects = subjects
        self._bucket: KeyValue | None = None

    async def open(
        self, *, retention_s: float, replicas: int, max_bytes: int | None = None
    ) -> None:
        """Bind the bucket, brought to ``max_bytes`` (refusing new claims when full), or
        create it.

        Raises: NatsUnavailable when the bucket cannot be bound, updated or created."""
        name = self._subjects.idempotency_bucket()
        with nats_errors(f"setting up bucket {name}"):
            self._bucket = await ensure_bucket(
                self._js,
                name,
                description="nexec idempotency keys: (key name, Idempotency-Key) -> job",
                replicas=replicas,
                max_bytes=max_bytes,
                ttl_s=retention_s,
            )

    async def claim(self, key_name: str, idempotency_key: str, request: bytes, job_id: str) -> str:
        """Claim the pair for ``job_id``; return the job id that owns it (``job_id`` if new).

        Raises:
            Conflict: the pair was claimed by a request different from ``request``, or
                its claim cannot be read.
            NatsUnavailable: the bucket is not open or did not answer.
        """
        if self._bucket is None:
            raise NatsUnavailable("the idempotency bucket is not open yet")
        bucket_key = entry_key(key_name, idempotency_key)
        claim = IdempotencyClaim(job_id=job_id, request_sha256=hashlib.sha256(request).hexdigest())
        with nats_errors(
            "idempotency check", when_full="the idempotency key was not stored, nothing ran"
        ):
            try:
                await self._bucket.create(bucket_key, encode(claim))
                return job_id
            except nats.js.errors.KeyWrongLastSequenceError:
                entry = await self._bucket.get(bucket_key)
        try:
            earlier = decode_idempotency_claim(entry.value or b"")
        except WireError as exc:
            log.warning("unreadable idempotency claim %s: %s", bucket_key, exc)
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} is held by an unreadable claim; "
                "use another key"
            ) from None
        if earlier.request_sha256 != claim.request_sha256:
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was used for a different request "
                f"(job {earlier.job_id})"
            )
        return earlier.job_id

    async def keep_from_now(self, bucket_key: str) -> None:
        """Write the claim under ``bucket_key`` (:func:`entry_key`) again, unchanged, so
        that its age, and so its expiry (the bucket's ``job_retention_s``), counts from
        now. A claim released or changed meanwhile is left so; failures are logged, not
        raised."""
        if self._bucket is None:
            return
        try:
            entry = await self._bucket.get(bucket_key)
            await self._bucket.update(bucket_key, entry.value or b"", last=entry.revision)
        except nats.js.errors.KeyNotFoundError:
            log.info("idempotency claim %s: gone before it was kept from now", bucket_key)
        except nats.js.errors.KeyWrongLastSequenceError:
            log.info("idempotency claim %s: changed before it was kept from now", bucket_key)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("idempotency claim %s not kept from now: %s", bucket_key,
                        exc or type(exc).__name__)  # fmt: skip

    async def release(self, key_name: str, idempotency_key: str) -> None:
        """Forget a claim whose job never started; failures are logged, not raised."""
        if self._bucket is None:
            return
        try:
            await self._bucket.delete(entry_key(key_name, idempotency_key))
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("idempotency claim not released: %s", exc or type(exc).__name__)


def entry_key(key_name: str, idempotency_key: str) -> str:
    """The bucket key of the pair (API key name, ``Idempotency-Key``)."""
    text = f"{key_name}\0{idempotency_key}"
    return hashlib.sha256(text.encode(errors="surrogateescape")).hexdigest()
