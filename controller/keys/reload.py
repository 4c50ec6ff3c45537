"""Reloading the keys file while the controller runs: at once on SIGHUP, and when a
cheap ``stat`` every ``keys_reload_interval_s`` shows that the file changed.

A file that cannot be read or holds an invalid entry changes nothing: the old
keys stay in force and a warning says why. The next change or SIGHUP tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from controller.keys.store import KeysFileError, KeyStore, read_keys_file

log = logging.getLogger("nexec.controller.keys")

FileSignature = tuple[int, int, int, int, int]
"""Device, inode, size, mtime and ctime (ns): an atomic replace changes the inode,
an edit in place the times or the size."""


def file_signature(path: Path) -> FileSignature | None:
    """The file's signature, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class KeysReloader:
    """Keeps a :class:`KeyStore` in step with its keys file."""

    def __init__(self, store: KeyStore, path: Path, interval_s: float) -> None:
        self._store = store
        self._path = path
        self._interval_s = interval_s
        self._signature: FileSignature | None = None
        self._reload_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.failures = 0

    def request_reload(self) -> None:
        """Reload at once, whether the file changed or not (the SIGHUP handler)."""
        self._reload_requested.set()

    def reload(self) -> bool:
        """Read the file and swap the store's keys. Returns False, keeping the old
        keys and logging why, when the file is unreadable or invalid."""
        self._signature = file_signature(self._path)  # before reading: a later change is seen
        try:
            keys = read_keys_file(self._path).keys
        except KeysFileError as exc:
            self.failures += 1
            log.warning(
                "keys file not reloaded, keeping the %d old keys: %s", len(self._store), exc
            )
            return False
        self._store.replace(keys)
        self.reloads += 1
        log.info("keys file %s loaded: %d key(s)", self._path, len(keys))
        return True

    def reload_if_changed(self) -> bool:
        """:meth:`reload` when the file's signature differs from the last attempt's.
        Returns whether the keys were replaced."""
        if file_signature(self._path) == self._signature:
            return False
        return self.reload()

    async def run(self) -> None:
        """Check the file every interval, or reload at once when asked, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload_requested.wait(), self._interval_s)
            try:
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self.reload()
                else:
                    self.reload_if_changed()
            except Exception:  # a bug must not end reloading for good: say so and go on
                log.exception("reloading the keys file failed; keeping the old keys")

    def start(self) -> None:
        """Load the file once (which sets the signature to compare with), then follow it."""
        self.reload()
        self._task = asyncio.create_task(self.run(), name="keys-reload")

    async def stop(self) -> None:
        """Stop following the file; safe to call twice or before :meth:`start`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
