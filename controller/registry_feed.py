"""Feeding the local registry view from the registry bucket's watcher.

Each entry speaks for the hostname its key carries, never the one its payload
names; an entry that is not a valid heartbeat of that host is refused whole
(logged and counted) and the watch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from controller.registry import Registry
from schemas import Subjects, WireError
from schemas.jetstream import open_registry
from schemas.registry_entry import decode_heartbeat_from, registry_key_hostname, shown

log = logging.getLogger("nexec.controller.registry")


class RegistryFeed:
    """Watches every key of the registry bucket and applies each change to ``registry``."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None

    async def start(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        replicas: int,
        max_bytes: int | None = None,
    ) -> None:
        """Watch the registry bucket (once; later calls do nothing), bringing it to
        ``replicas`` and ``max_bytes``.

        Raises: nats.js.errors.Error or nats.errors.TimeoutError from JetStream.
        """
        if self._task is not None:
            return
        bucket = await open_registry(js, subjects, replicas=replicas, max_bytes=max_bytes)
        self._watcher = await bucket.watchall()
        self._task = asyncio.create_task(self._apply(self._watcher), name="registry watch")
        self._task.add_done_callback(_log_end)

    @property
    def following(self) -> bool:
        """True while the watch runs: the registry view follows the bucket."""
        return self._task is not None and not self._task.done()

    async def _apply(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is not None:  # None: the end of the initial values
                self._apply_entry(entry)

    def _apply_entry(self, entry: KeyValue.Entry) -> None:
        """One change of the bucket; a bad entry is refused, never raised."""
        removed = entry.operation is not None
        try:
            hostname = registry_key_hostname(entry.key)
        except WireError as exc:
            if removed:  # nothing was ever stored under an invalid key
                log.debug("removal of registry entry %s ignored: %s", shown(entry.key), exc)
            else:
                self._registry.refuse(entry.key, str(exc))
            return
        if removed:
            self._registry.remove(
                hostname, "entry removed" if entry.operation == "DEL" else "expired"
            )
            return
        try:
            heartbeat = decode_heartbeat_from(entry.value or b"", hostname=hostname)
        except WireError as exc:
            self._registry.refuse(entry.key, str(exc))
            return
        self._registry.observe(hostname, heartbeat)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.remove_done_callback(_log_end)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _log_end(task: asyncio.Task[None]) -> None:
    """The watch runs for the controller's lifetime: any end before ``stop`` is an error."""
    if task.cancelled():
        log.error("registry watch cancelled: the registry view no longer follows the bucket")
    elif (exc := task.exception()) is not None:
        log.error(
            "registry watch failed: the registry view no longer follows the bucket",
            exc_info=exc,
        )
    else:
        log.error("registry watch ended: the registry view no longer follows the bucket")
