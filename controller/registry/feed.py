"""Feeding the local registry view from the registry bucket's watcher.

Each entry speaks for the hostname its key carries, never the one its payload
names; an entry that is not a valid heartbeat of that host is refused whole
(logged and counted) and the watch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from controller.registry.view import Registry
from runtime.jetstream import ensure_registry
from schemas import Subjects, WireError
from schemas.registry_entry import decode_heartbeat_from, registry_key_hostname
from schemas.untrusted import shown

log = logging.getLogger("nexec.controller.registry")


WATCH_RETRY_FIRST_S = 0.5
WATCH_RETRY_MAX_S = 5.0


class RegistryFeed:
    """Watches every key of the registry bucket and applies each change to ``registry``.

    When NATS is lost the view is suspended (no agent expires for heartbeats the watch
    cannot see); on reconnection, or when the bucket was made again, the watch starts
    over (retrying until JetStream answers), and the view resumes once the watch has
    delivered the bucket's current entries.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._js: JetStreamContext | None = None
        self._subjects: Subjects | None = None
        self._replicas = 1
        self._max_bytes: int | None = None
        self._stopping = False

    @property
    def following(self) -> bool:
        """True while a watch runs: the registry view follows the bucket."""
        return self._watcher is not None and self._task is not None and not self._task.done()

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
        self._js, self._subjects = js, subjects
        self._replicas, self._max_bytes = replicas, max_bytes
        watcher = await self._open_watch()
        self._task = asyncio.create_task(self._follow(watcher), name="registry watch")
        self._task.add_done_callback(_log_end)

    def suspend(self) -> None:
        """NATS was lost: stop expiring agents until the watch is back."""
        self._registry.suspend()

    async def watch_again(self) -> None:
        """Start the watch over (after a reconnection, or once the bucket was made
        again), retrying in the background until JetStream answers."""
        if self._task is None or self._stopping:
            return
        self._registry.suspend()
        await self._cancel_watch()
        self._task = asyncio.create_task(self._rewatch(), name="registry watch")
        self._task.add_done_callback(_log_end)

    async def _open_watch(self) -> KeyValue.KeyWatcher:
        """Raises: nats.js.errors.Error or nats.errors.TimeoutError from JetStream."""
        assert self._js is not None and self._subjects is not None
        bucket = await ensure_registry(
            self._js, self._subjects, replicas=self._replicas, max_bytes=self._max_bytes
        )
        self._watcher = await bucket.watchall()
        return self._watcher

    async def _rewatch(self) -> None:
        delay_s = WATCH_RETRY_FIRST_S
        while not self._stopping:
            try:
                watcher = await self._open_watch()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning(
                    "registry watch not back yet; retrying in %g s: %s",
                    delay_s,
                    exc or type(exc).__name__,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(2 * delay_s, WATCH_RETRY_MAX_S)
                continue
            log.info("registry watch back")
            await self._follow(watcher)
            return

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:  # the end of the current values: the view is whole again
                self._registry.resume()
            else:
                self._apply_entry(entry)

    def _apply_entry(self, entry: KeyValue.Entry) -> None:
        """One change of the bucket; a bad entry is refused, never raised.

        Only a ``DEL`` or ``PURGE`` operation removes an agent: any other value of the
        ``KV-Operation`` header (anyone who may write the key can set one) is a put, as
        for the server and the other NATS clients, so its value must be a valid heartbeat.
        """
        removed = entry.operation in (KV_DEL, KV_PURGE)
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
                hostname, "entry removed" if entry.operation == KV_DEL else "expired"
            )
            return
        try:
            heartbeat = decode_heartbeat_from(entry.value or b"", hostname=hostname)
        except WireError as exc:
            self._registry.refuse(entry.key, str(exc))
            return
        self._registry.observe(hostname, heartbeat)

    async def _cancel_watch(self) -> None:
        """Stop the current watch task and unsubscribe its watcher (bounded)."""
        if self._task is not None:
            self._task.remove_done_callback(_log_end)
            self._task.cancel()
            # Bounded: nats-py can swallow a cancel that meets a reply; the retry loop
            # then ends on ``_stopping``, or the task is left to a closed connection.
            await asyncio.wait({self._task}, timeout=WATCH_RETRY_MAX_S)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                async with asyncio.timeout(WATCH_RETRY_MAX_S):
                    await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py: untyped

    async def stop(self) -> None:
        self._stopping = True
        await self._cancel_watch()


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
