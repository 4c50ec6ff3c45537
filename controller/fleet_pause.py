"""The fleet's pause: one entry of a KV bucket that every controller follows.

``POST /fleet/pause`` writes the entry (``paused: true``, who, when), ``POST
/fleet/resume`` writes it again with ``paused: false``. Each controller reads the
entry when it connects, before it takes any request, and then watches it; while it
says paused, exec and shell are refused with 503 (:meth:`FleetPauseState.refuse_if_paused`).
The bucket is file-backed, so a pause outlives every controller and a NATS restart.

A watch that starts over (after a reconnection, or once the bucket was made again)
reads the entry first. A bucket lost while the fleet was paused is made again with
the pause this controller knew (:meth:`FleetPauseState.remake`): a lost store never
unpauses the fleet by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from controller.errors import FleetPaused, NatsUnavailable, nats_errors
from runtime.jetstream import ensure_bucket
from runtime.retry import backoff_s
from schemas.api import FleetPause
from schemas.decoding import WireError, decode_fleet_pause
from schemas.messages import FleetPauseRecord, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.fleet")

WATCH_RETRY_MAX_S = 5.0
"""The longest wait between watch tries (:func:`runtime.retry.backoff_s`), and the
bound of stopping the watch."""


class FleetPauseState:
    """This controller's view of the pause entry, and the writes of it."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self._js = js
        self._subjects = subjects
        self._bucket: KeyValue | None = None
        self._record: FleetPauseRecord | None = None
        self._revision = 0
        """The bucket sequence of the entry applied last (0: none yet)."""
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._replicas = 1
        self._max_bytes: int | None = None
        self._stopping = False

    @property
    def paused(self) -> FleetPause | None:
        """Who paused the fleet and when; None while it runs."""
        record = self._record
        if record is None or not record.paused:
            return None
        return FleetPause(by=record.by, since=record.since)

    def refuse_if_paused(self) -> None:
        """Raises: FleetPaused while the fleet is paused (``the fleet is paused by <key>``)."""
        paused = self.paused
        if paused is not None:
            raise FleetPaused(f"the fleet is paused by {paused.by}")

    async def open(self, *, replicas: int, max_bytes: int | None = None) -> None:
        """Bind the bucket (brought to ``max_bytes``) or create it, read the pause entry,
        and follow it from then on.

        Raises: NatsUnavailable when the bucket cannot be bound, created or read."""
        self._replicas, self._max_bytes = replicas, max_bytes
        await self._bind()
        await self._read()
        await self._restart_watch()  # reads again, then watches

    async def remake(self) -> None:
        """Make the bucket again (it went missing) with the pause this controller knew,
        before anything reads it: a lost store never unpauses the fleet.

        Raises: NatsUnavailable when the bucket cannot be made, written or read."""
        known = self._record
        await self._bind()
        if known is not None and known.paused:
            assert self._bucket is not None
            with (
                nats_errors("restoring the fleet's pause"),
                contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError),
            ):
                await self._bucket.create(self._key, encode(known))
        await self._read()
        await self._restart_watch()

    async def _bind(self) -> None:
        """Raises: NatsUnavailable when the bucket cannot be bound, updated or created."""
        name = self._subjects.fleet_bucket()
        with nats_errors(f"setting up bucket {name}"):
            self._bucket = await ensure_bucket(
                self._js,
                name,
                description="nexec fleet state (the pause)",
                replicas=self._replicas,
                max_bytes=self._max_bytes,
            )

    async def pause(self, by: str) -> FleetPause:
        """Pause the fleet as ``by`` (a key name); a fleet paused already stays paused
        by whoever paused it first.

        Raises: NatsUnavailable (or StorageFull): the pause was not stored."""
        paused = self.paused
        if paused is not None:
            return paused
        await self._write(FleetPauseRecord(paused=True, by=by, since=time.time()))
        paused = self.paused
        assert paused is not None
        return paused

    async def resume(self, by: str) -> None:
        """Let the fleet run again (written even when this controller saw no pause).

        Raises: NatsUnavailable (or StorageFull): the resume was not stored."""
        await self._write(FleetPauseRecord(paused=False, by=by, since=time.time()))

    async def wait_until(
        self, condition: Callable[[FleetPause | None], bool], timeout_s: float
    ) -> None:
        """Wait until ``condition(self.paused)`` holds (rechecked on each change).

        Raises: TimeoutError: it did not hold within ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not condition(self.paused):
                self._changed.clear()
                await self._changed.wait()

    async def watch_again(self) -> None:
        """Read the entry again and watch it anew (after a reconnection); retried in
        the background until JetStream answers."""
        if self._bucket is None or self._stopping:
            return
        await self._restart_watch()

    async def stop(self) -> None:
        self._stopping = True
        await self._cancel_watch()

    @property
    def _key(self) -> str:
        return self._subjects.fleet_pause_key()

    async def _write(self, record: FleetPauseRecord) -> None:
        """Raises: NatsUnavailable, StorageFull: not stored."""
        if self._bucket is None:
            raise NatsUnavailable("the fleet bucket is not open yet")
        with nats_errors("storing the fleet's pause", when_full="the fleet's pause was not stored"):
            revision = await self._bucket.put(self._key, encode(record))
        self._apply(record, revision)

    async def _read(self) -> None:
        """Read the entry as it is now (a new watch, or a bucket made again, numbers its
        entries from wherever the bucket is: the first read is taken whatever its revision).

        Raises: NatsUnavailable: JetStream did not answer, or the bucket is missing (the
        state stays as it was)."""
        assert self._bucket is not None
        with nats_errors("reading the fleet's pause"):
            try:
                entry = await self._bucket.get(self._key)
            except nats.js.errors.KeyNotFoundError:
                # nats-py says the same when the whole bucket is gone: that is no resume.
                await self._js.stream_info(f"KV_{self._subjects.fleet_bucket()}")
                entry = None
        self._revision = 0
        if entry is None:
            self._apply(None, 0)
        else:
            self._apply_entry(entry)

    def _apply_entry(self, entry: KeyValue.Entry) -> None:
        """One change of the entry; an unreadable one is logged and changes nothing."""
        if entry.operation in (KV_DEL, KV_PURGE):
            self._apply(None, entry.revision or 0)
            return
        try:
            record = decode_fleet_pause(entry.value or b"")
        except WireError as exc:
            log.error("fleet pause entry %s unreadable, the state stays: %s", entry.revision, exc)
            return
        self._apply(record, entry.revision or 0)

    def _apply(self, record: FleetPauseRecord | None, revision: int) -> None:
        if revision and revision < self._revision:
            return  # an older change than the one applied (a watch catching up)
        before = self.paused
        self._record, self._revision = record, max(revision, self._revision)
        if self.paused != before:
            if self.paused is None:
                log.warning("the fleet runs again (resumed by %r)", record.by if record else "")
            else:
                log.warning("the fleet is paused by %r", self.paused.by)
        self._changed.set()

    async def _restart_watch(self) -> None:
        await self._cancel_watch()
        self._task = asyncio.create_task(self._follow(), name="fleet pause watch")

    async def _follow(self) -> None:
        """Read the entry, then watch it, for the controller's lifetime; start over
        after a failure."""
        for delay_s in backoff_s(WATCH_RETRY_MAX_S):
            if self._stopping:
                return
            assert self._bucket is not None
            try:
                await self._read()
                self._watcher = await self._bucket.watch(self._key)
                async for entry in self._watcher:
                    if entry is not None:
                        self._apply_entry(entry)
                return  # the watcher was stopped
            except (NatsUnavailable, nats.errors.Error, TimeoutError) as exc:
                log.warning(
                    "fleet pause watch failed; again in %g s: %s",
                    delay_s,
                    exc or type(exc).__name__,
                )
            await asyncio.sleep(delay_s)

    async def _cancel_watch(self) -> None:
        """Stop the watch task and its watcher. Bounded: nats-py can swallow a cancel
        that meets a reply."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=WATCH_RETRY_MAX_S)
            self._task = None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                async with asyncio.timeout(WATCH_RETRY_MAX_S):
                    await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py: untyped
