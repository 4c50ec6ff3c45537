"""Feeding the local registry view from the registry bucket's watcher.

Each entry speaks for the hostname its key carries, never the one its payload
names; an entry that is not a valid heartbeat of that host is refused whole
(logged and counted) and the watch goes on.

A watch can stall without the connection dropping: when the node that served its
consumer, or the bucket's leader, is lost, nothing arrives until nats-py notices
missed idle heartbeats (10 s) and the bucket takes no heartbeats until a new leader
is elected. So every ``check_interval_s`` the feed checks the watch (two bounded
requests: the bucket's stream info, answered by its leader, and the watch
consumer's info); when the watch has delivered all the bucket held at the previous
check, it confirms that check's time to the view. When a check fails, the view is
suspended back to the last confirmation and the watch starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from controller.registry.view import Registry
from runtime.jetstream import ensure_registry
from runtime.retry import backoff_s
from schemas.decoding import WireError
from schemas.registry_entry import decode_heartbeat_from, registry_key_hostname
from schemas.subjects import Subjects
from schemas.untrusted import shown

log = logging.getLogger("nexec.controller.registry")


WATCH_RETRY_MAX_S = 5.0
"""The longest wait between watch tries (:func:`runtime.retry.backoff_s`), and the
bound of stopping the watch."""
DEFAULT_CHECK_INTERVAL_S = 1.0
DEFAULT_CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Checked:
    """A good check of the watch: when it started (watch time), and the last
    sequence the bucket held then."""

    at: float
    last_seq: int


class RegistryFeed:
    """Watches every key of the registry bucket and applies each change to ``registry``.

    When NATS is lost the view is suspended (no agent expires for heartbeats the watch
    cannot see); on reconnection, or when the bucket was made again, the watch starts
    over (retrying until JetStream answers), and the view resumes once the watch has
    delivered the bucket's current entries.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        check_timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
    ) -> None:
        self._registry = registry
        self._check_interval_s = check_interval_s
        self._check_timeout_s = check_timeout_s
        self._checker: asyncio.Task[None] | None = None
        self._revision = 0
        """Stream sequence of the latest entry the watch delivered."""
        self._whole = False
        """True once the current watch delivered the bucket's current entries."""
        self._previous: Checked | None = None
        """The last good check of the current watch."""
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
        self._checker = asyncio.create_task(self._check_loop(), name="registry watch check")

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
        # A new watch delivers the bucket from its start (a bucket made again
        # numbers its entries from 1 again).
        self._whole, self._previous, self._revision = False, None, 0
        self._watcher = await bucket.watchall()
        return self._watcher

    async def _rewatch(self) -> None:
        for delay_s in backoff_s(WATCH_RETRY_MAX_S):
            if self._stopping:
                return
            try:
                watcher = await self._open_watch()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning(
                    "registry watch not back yet; retrying in %g s: %s",
                    delay_s,
                    exc or type(exc).__name__,
                )
                await asyncio.sleep(delay_s)
                continue
            log.info("registry watch back")
            await self._follow(watcher)
            return

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:  # the end of the current values: the view is whole again
                self._whole = True
                self._registry.resume()
                self._registry.confirm(self._registry.watch_time())
            else:
                self._revision = max(self._revision, entry.revision or 0)
                self._apply_entry(entry)

    async def _check_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._check_interval_s)
            watcher = self._watcher
            if watcher is None or not self._whole:
                continue  # starting over (or NATS is down): nothing to check yet
            try:
                await self._check(watcher)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning(
                    "registry watch check failed, starting the watch over: %s",
                    str(exc) or type(exc).__name__,
                )
                await self.watch_again()

    async def _check(self, watcher: KeyValue.KeyWatcher) -> None:
        """Check that the bucket answers through its leader and that the watch's
        consumer exists; confirm the previous check's time to the view when the watch
        has delivered everything the bucket held then (a steady flow of heartbeats
        always leaves some in flight, so "everything now" would rarely hold).

        Raises: nats.errors.Error or TimeoutError: the bucket or the consumer did not
        answer within the check's timeout.
        """
        assert self._js is not None and self._subjects is not None
        started_at = self._registry.watch_time()
        async with asyncio.timeout(self._check_timeout_s):
            info = await self._js.stream_info(f"KV_{self._subjects.registry_bucket()}")
            # nats-py keeps the watch's subscription private; its consumer name
            # follows the ordered consumer's resets.
            subscription = watcher._sub
            if subscription is None:
                return  # not subscribed yet
            await subscription.consumer_info()
        if self._previous is not None and self._revision >= self._previous.last_seq:
            self._registry.confirm(self._previous.at)
        self._previous = Checked(started_at, info.state.last_seq)

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
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.wait({self._checker}, timeout=self._check_timeout_s)
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
