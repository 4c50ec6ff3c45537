"""How a job's output and results are shown: human forms and JSON lines.

Human form: one host's output as ssh shows it (stdout to stdout, stderr to stderr,
unchanged); several hosts' output line by line, each prefixed with its hostname and
aligned (``web1: ...``; stderr lines to stderr), then a summary on stderr. Grouped
(``-b``): hosts with identical output and outcome shown once under a header naming them
in compact form (``web[1-3,7]``). JSON lines: one object per host result (and per output
chunk with ``--stream``), each the API's encoding.
"""

from __future__ import annotations

import shlex
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from nexec.cli.exit_status import exit_status
from nexec.cli.hostlist import compact
from nexec.cli.terminal import Terminal

if TYPE_CHECKING:
    from schemas.api import RolloutProgress
    from schemas.messages import ExecResult, OutputChunk

GROUP_RULE = "-" * 15
STATUS_ROLES = {"completed": "ok", "timeout": "warn"}


class View(Protocol):
    """What a job's events are given to; ``finish`` returns the exit status."""

    def expect(self, hostnames: Sequence[str], *, live: bool) -> None: ...
    def chunk(self, chunk: OutputChunk) -> None: ...
    def result(self, result: ExecResult) -> None: ...
    def finish(self, results: Sequence[ExecResult]) -> int: ...


def describe(result: ExecResult) -> str | None:
    """What went wrong on one host, in a few words; None for exit code 0."""
    if result.status == "completed":
        if result.exit_code == 0:
            return None
        if result.exit_code is not None and result.exit_code < 0:
            return f"killed by signal {-result.exit_code}"
        return f"exit {result.exit_code}"
    return f"{result.status}: {result.error}" if result.error else str(result.status)


def command_line(command: str, args: Sequence[str], *, shell: bool) -> str:
    """What a job ran, as a shell would read it: ``echo 'a b'``, or a shell job's line
    as ``sh -c 'LINE'`` (so the two kinds are never mistaken for each other). Any
    caller wrote it: a word with a control character (a newline, a terminal escape, a
    bidi override) is shown as bash's ``$'...'`` with escapes, never raw."""
    words = ["sh", "-c", command] if shell else [command, *args]
    return " ".join(map(shell_word, words))


def shell_word(text: str) -> str:
    """``text`` quoted as bash reads it: :func:`shlex.quote`, or ``$'...'`` with every
    character that is not printable escaped (``\\n``, ``\\x1b``, ``\\u202e``)."""
    if text.isprintable():
        return shlex.quote(text)
    return "$'" + "".join(map(_escaped, text)) + "'"


def visible(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\x1b``,
    ``\\n``): a table cell an agent or a caller wrote cannot forge a row or drive the
    terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    """One character inside bash's ``$'...'``."""
    if char in "\\'":
        return "\\" + char
    if char.isprintable():
        return char
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def rollout_line(rollout: RolloutProgress) -> str:
    """A rollout's progress in one line: ``rollout (batch 2, max failures 0): 3 started,
    2 finished, 1 failed, 1 skipped, 0 pending``, and why it stopped if it did."""
    started = rollout.running + rollout.finished
    line = (
        f"rollout (batch {rollout.batch_size}, max failures {rollout.max_failures}): "
        f"{started} started, {rollout.finished} finished, {rollout.failed} failed, "
        f"{rollout.skipped} skipped, {rollout.pending} pending"
    )
    return f"{line}; stopped: {rollout.stopped}" if rollout.stopped else line


class JsonLines:
    """One JSON object per line: each host result (the API's ``ResultItem``), and each
    output chunk when ``stream``."""

    def __init__(self, terminal: Terminal, *, stream: bool) -> None:
        self._terminal = terminal
        self._stream = stream

    def expect(self, hostnames: Sequence[str], *, live: bool) -> None:
        pass

    def chunk(self, chunk: OutputChunk) -> None:
        if self._stream:
            self._line(chunk)

    def result(self, result: ExecResult) -> None:
        self._line(result)

    def _line(self, item: ExecResult | OutputChunk) -> None:
        self._terminal.write(msgspec.json.encode(item).decode() + "\n")

    def finish(self, results: Sequence[ExecResult]) -> int:
        return exit_status(results)


class Human:
    """The human form. ``prefixed``: several hosts; ``stream``: chunks shown as they come
    (else each host's output when its result arrives); ``grouped``: ``-b``, everything at
    the end."""

    def __init__(self, terminal: Terminal, *, prefixed: bool, stream: bool, grouped: bool) -> None:
        self._terminal = terminal
        self._prefixed = prefixed or grouped
        self._stream = stream and not grouped
        self._grouped = grouped
        self._width = 0
        self._partial: dict[tuple[str, str], str] = defaultdict(str)

    def expect(self, hostnames: Sequence[str], *, live: bool) -> None:
        """Align the prefixes on the longest of ``hostnames``; when ``live`` (the job is
        followed as it runs) and several hosts are expected, show the progress line."""
        self._width = max((len(name) for name in hostnames), default=0)
        if live and self._prefixed and len(hostnames) > 1:
            self._terminal.start_progress(len(hostnames))

    def chunk(self, chunk: OutputChunk) -> None:
        if not self._stream:
            return
        if not self._prefixed:
            self._terminal.write(chunk.data, err=chunk.stream == "stderr")
            return
        key = (chunk.hostname, chunk.stream)
        *lines, self._partial[key] = (self._partial[key] + chunk.data).split("\n")
        self._lines(chunk.hostname, lines, err=chunk.stream == "stderr")

    def result(self, result: ExecResult) -> None:
        if self._terminal.progress is not None:
            self._terminal.progress.answered += 1
        if self._grouped:
            return
        if self._stream:
            for stream in ("stdout", "stderr"):
                rest = self._partial.pop((result.hostname, stream), "")
                if rest and self._prefixed:
                    self._lines(result.hostname, [rest], err=stream == "stderr")
            return
        self._output(result.hostname, result.stdout, err=False)
        self._output(result.hostname, result.stderr, err=True)

    def _output(self, hostname: str, text: str, *, err: bool) -> None:
        if not text:
            return
        if not self._prefixed:
            self._terminal.write(text, err=err)
            return
        self._lines(hostname, text.removesuffix("\n").split("\n"), err=err)

    def _lines(self, name: str, lines: Iterable[str], *, err: bool) -> None:
        label = self._terminal.paint(name + ":", "error" if err else "host", err=err)
        padding = " " * (max(self._width, len(name)) - len(name) + 1)
        text = "".join(f"{label}{padding}{line}\n" for line in lines)
        if text:
            self._terminal.write(text, err=err)

    def finish(self, results: Sequence[ExecResult]) -> int:
        self._terminal.end_progress()
        if self._grouped:
            self._groups(results)
        if self._prefixed:
            self._summary(results)
        else:  # as ssh, silent on a remote exit code, but saying why nothing ran
            for result in results:
                if result.status != "completed":
                    self._terminal.say(f"{result.hostname}: {describe(result)}")
        return exit_status(results)

    def _groups(self, results: Sequence[ExecResult]) -> None:
        groups: dict[tuple[object, ...], list[ExecResult]] = defaultdict(list)
        for result in results:
            groups[(result.status, result.exit_code, result.stdout, result.stderr)].append(result)
        for members in sorted(groups.values(), key=lambda group: group[0].hostname):
            names = compact(member.hostname for member in members)
            outcome = describe(members[0])
            header = f"{names} ({len(members)})" + (f": {outcome}" if outcome else "")
            painted = self._terminal.paint(header, "bold")
            self._terminal.write(f"{GROUP_RULE}\n{painted}\n{GROUP_RULE}\n{members[0].stdout}")
            if members[0].stdout and not members[0].stdout.endswith("\n"):
                self._terminal.write("\n")
            self._output(names, members[0].stderr, err=True)

    def _summary(self, results: Sequence[ExecResult]) -> None:
        counts = Counter(str(result.status) for result in results)
        hosts = "host" if len(results) == 1 else "hosts"
        by_status = ", ".join(
            self._terminal.paint(f"{count} {status}", STATUS_ROLES.get(status, "error"), err=True)
            for status, count in sorted(counts.items())
        )
        lines = [f"{len(results)} {hosts}: {by_status or 'none answered'}"]
        for result in sorted(results, key=lambda result: result.hostname):
            outcome = describe(result)
            if outcome is not None:
                lines.append(f"  {result.hostname}: {outcome}")
        self._terminal.write("".join(f"{line}\n" for line in lines), err=True)
