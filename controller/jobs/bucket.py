"""A KV bucket the controller keeps (made when missing, brought to its ``max_bytes``)
and the one way its stores reach it."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from controller.errors import NatsUnavailable, nats_errors
from runtime.jetstream import ensure_bucket


class BucketStore:
    """Base of a store on one KV bucket of history 1 (rollouts, host slots)."""

    def __init__(self, js: JetStreamContext, name: str, description: str) -> None:
        self._js = js
        self._name = name
        self._description = description
        self._bucket: KeyValue | None = None

    async def open(self, *, retention_s: float, replicas: int, max_bytes: int) -> None:
        """Bind the bucket (brought to ``max_bytes``) or create it; entries expire after
        ``retention_s``.

        Raises:
            NatsUnavailable: JetStream did not answer or refused the configuration.
        """
        with nats_errors(f"setting up bucket {self._name}"):
            self._bucket = await ensure_bucket(
                self._js,
                self._name,
                description=self._description,
                replicas=replicas,
                max_bytes=max_bytes,
                ttl_s=retention_s,
            )

    def _kv(self) -> KeyValue:
        """Raises: NatsUnavailable before the bucket is open."""
        if self._bucket is None:
            raise NatsUnavailable(f"bucket {self._name} is not open yet")
        return self._bucket
