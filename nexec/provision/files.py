"""Writing the files ``nexec`` generates (keys, certificates, settings) with a set mode."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600
"""Secrets: readable by their owner only."""
PUBLIC = 0o644
"""Certificates: readable by services that run as other users."""


def write_file(path: Path, data: bytes | str, *, mode: int = PRIVATE) -> Path:
    """Create or replace ``path`` holding ``data``, with ``mode`` (also when the file
    existed with another). Returns ``path``.

    Raises:
        OSError: it cannot be written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # before writing: a replaced file keeps its old mode otherwise
    with os.fdopen(fd, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
    return path
