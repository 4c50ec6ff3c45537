"""The two output streams, whether each is a terminal, colour, and the progress line.

Colour only on a terminal and never when ``NO_COLOR`` is set (https://no-color.org); the
progress line only when stderr is a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

import msgspec

CLEAR_LINE = "\r\x1b[K"
COLOURS = {"host": "36", "error": "31", "warn": "33", "ok": "32", "bold": "1"}
"""ANSI SGR codes by role: cyan hostnames, red failures, yellow timeouts, green success."""


def wants_colour(stream: TextIO, env: Mapping[str, str]) -> bool:
    return stream.isatty() and not env.get("NO_COLOR")


class Terminal(msgspec.Struct):
    """Where the command writes: ``out`` (stdout) and ``err`` (stderr)."""

    out: TextIO
    err: TextIO
    colour_out: bool = False
    colour_err: bool = False
    is_tty_err: bool = False
    progress: Progress | None = None

    @classmethod
    def system(cls, env: Mapping[str, str] = os.environ) -> Terminal:
        return cls(
            out=sys.stdout,
            err=sys.stderr,
            colour_out=wants_colour(sys.stdout, env),
            colour_err=wants_colour(sys.stderr, env),
            is_tty_err=sys.stderr.isatty(),
        )

    def paint(self, text: str, role: str, *, err: bool = False) -> str:
        if not (self.colour_err if err else self.colour_out):
            return text
        return f"\x1b[{COLOURS[role]}m{text}\x1b[0m"

    def write(self, text: str, *, err: bool = False) -> None:
        """Write ``text`` to stdout (or stderr), keeping the progress line below it."""
        stream = self.err if err else self.out
        if self.progress is not None:
            self.progress.clear()
        stream.write(text)
        stream.flush()
        if self.progress is not None:
            self.progress.draw()

    def say(self, text: str) -> None:
        """A message of the command's own on stderr: ``nexec: text``."""
        self.write(f"nexec: {text}\n", err=True)

    def start_progress(self, expected: int) -> None:
        """Show the progress line (only when stderr is a terminal)."""
        if self.is_tty_err:
            self.progress = Progress(self.err, expected)
            self.progress.draw()

    def end_progress(self) -> None:
        if self.progress is not None:
            self.progress.clear()
            self.progress = None


class Progress(msgspec.Struct):
    """``3/5 answered, 1.2 s`` on the last line of a terminal, redrawn as hosts answer."""

    stream: TextIO
    expected: int
    answered: int = 0
    started: float = msgspec.field(default_factory=time.monotonic)
    detail: str = ""
    """More to show after the count (a rollout's progress)."""

    def draw(self) -> None:
        elapsed = time.monotonic() - self.started
        detail = f", {self.detail}" if self.detail else ""
        self.stream.write(
            f"{CLEAR_LINE}[{self.answered}/{self.expected} answered, {elapsed:.1f} s{detail}]"
        )
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write(CLEAR_LINE)
        self.stream.flush()
