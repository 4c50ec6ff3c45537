"""Host names in compact form, as clush and pdsh write them: ``web[1-3,7],db1``."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<suffix>\D*)$")
"""A name whose last run of digits is followed only by non-digits (``web12.lan``)."""


def compact(hostnames: Iterable[str]) -> str:
    """The names folded on their last number: ``web1 web2 web3 web7`` -> ``web[1-3,7]``.

    Numbers keep their width (``n01 n02`` -> ``n[01-02]``); names of different widths
    are not merged into one range. Groups are sorted by prefix, then suffix.
    """
    groups: dict[tuple[str, str, int], set[int]] = defaultdict(set)
    plain: set[str] = set()
    for name in hostnames:
        match = _NUMBERED.match(name)
        if match is None:
            plain.add(name)
            continue
        digits = match["number"]
        width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
        groups[(match["prefix"], match["suffix"], width)].add(int(digits))
    parts = [
        (
            natural(f"{prefix}{min(numbers):0{width}d}{suffix}"),
            _folded(prefix, suffix, width, numbers),
        )
        for (prefix, suffix, width), numbers in groups.items()
    ]
    parts += [(natural(name), name) for name in plain]
    return ",".join(text for _, text in sorted(parts))


def natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders ``web2`` before ``web10``."""
    return tuple(
        (0, int(piece)) if piece.isdigit() else (1, piece)
        for piece in re.split(r"(\d+)", name)
        if piece
    )


def _folded(prefix: str, suffix: str, width: int, numbers: set[int]) -> str:
    ranges = _ranges(sorted(numbers))
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return f"{prefix}{ranges[0][0]:0{width}d}{suffix}"
    spans = ",".join(
        f"{low:0{width}d}" if low == high else f"{low:0{width}d}-{high:0{width}d}"
        for low, high in ranges
    )
    return f"{prefix}[{spans}]{suffix}"


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return ranges
