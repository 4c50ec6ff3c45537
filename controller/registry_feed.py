"""Feeding the local registry view from the registry bucket's watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from controller.registry import Registry
from schemas import Subjects, WireError, decode_heartbeat
from schemas.jetstream import open_registry
from schemas.subjects import decode_token

log = logging.getLogger("nexec.controller.registry")


class RegistryFeed:
    """Watches every key of the registry bucket and applies each change to ``registry``."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None

    async def start(self, js: JetStreamContext, subjects: Subjects, *, replicas: int) -> None:
        """Watch the registry bucket (once; later calls do nothing).

        Raises: nats.js.errors.Error or nats.errors.TimeoutError from JetStream.
        """
        if self._task is not None:
            return
        bucket = await open_registry(js, subjects, replicas=replicas)
        self._watcher = await bucket.watchall()
        self._task = asyncio.create_task(self._apply(self._watcher))

    async def _apply(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:  # the end of the initial values
                continue
            try:
                hostname = decode_token(entry.key)
            except ValueError:
                log.warning("registry entry with a malformed key %r ignored", entry.key)
                continue
            if entry.operation is not None:
                self._registry.remove(
                    hostname, "entry removed" if entry.operation == "DEL" else "expired"
                )
                continue
            try:
                self._registry.observe(decode_heartbeat(entry.value or b""))
            except WireError as exc:
                log.warning("malformed registry entry %s ignored: %s", entry.key, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
