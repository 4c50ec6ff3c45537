"""API keys: generated at random, stored only as SHA-256 hashes, checked in constant time.

The keys file is JSON::

    {"keys": [{"name": "ops", "sha256": "<hex>", "permissions": ["command:exec"],
               "targets": ["web*", "env:dev"], "created_at": 1764700000.0,
               "expires_at": 1767292000.0}]}

``expires_at`` (unix time) is optional: a key without it never expires, and it is
written only when set, so that files without expiring keys stay readable by
controllers that predate it. Revoking a key removes its entry.

A key is 32 random bytes (256 bits), so a plain SHA-256 is as strong as a slow
password hash here and costs nothing per request.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from schemas.messages import JobRecord
from schemas.targets import ALL, ANY, Target, TargetKind, TargetSyntaxError, parse_target

KEY_PREFIX = "nxk_"
PERMISSIONS = frozenset(
    {
        "command:exec",
        "command:shell",
        "job:read",
        "job:cancel",
        "node:read",
        "audit:read",
        "fleet:admin",
    }
)


DURATION_RE = re.compile(r"(?P<count>[1-9][0-9]{0,8})(?P<unit>[smhd])")
DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 100 * 365 * 86400
MAX_MAX_HOSTS = 1_000_000
"""The largest ``max_hosts`` a key may carry."""
LATEST_EXPIRY = 253402300799.0
"""9999-12-31T23:59:59Z: the latest ``expires_at`` a keys file may hold."""


class KeysFileError(ValueError):
    """The keys file cannot be read or written, or an entry is invalid."""


class UnknownKeyName(KeysFileError):
    """No key in the keys file has the given name."""


class KeyExpired(Exception):
    """A presented key matches an entry whose ``expires_at`` has passed."""

    def __init__(self, name: str, expires_at: float) -> None:
        super().__init__(f"API key {name!r} expired at {format_time(expires_at)}")
        self.name = name
        self.expires_at = expires_at


class StoredKey(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    name: str
    sha256: str
    permissions: list[str]
    targets: list[str] = []
    """Glob patterns (``fnmatch``) the target string must match; empty means any."""
    created_at: float = 0.0
    expires_at: float | None = None
    """Unix time from which the key is refused; None: never."""
    max_hosts: int | None = None
    """At most this many hosts run the key's commands at once; None: no limit."""


class KeysFile(msgspec.Struct, kw_only=True):
    keys: list[StoredKey] = []


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An authenticated caller: the key's name and what it may do."""

    name: str
    permissions: frozenset[str]
    targets: tuple[str, ...]
    expires_at: float | None = None
    max_hosts: int | None = None
    """At most this many hosts run its commands at once (docs/security.md)."""

    def has_permission(self, permission: str) -> bool:
        return permission in self.permissions

    def may_target(self, target: Target) -> bool:
        """Whether the key's target patterns allow ``target``.

        Patterns with a ``:`` are label patterns: a label selector is allowed when
        one of its labels matches one (every host it reaches carries that label).
        Other patterns match hostnames, or ``_all`` and ``_any`` literally.
        """
        if not self.targets:
            return True
        label_patterns = [p for p in self.targets if ":" in p]
        host_patterns = [p for p in self.targets if ":" not in p]
        if target.kind is TargetKind.LABELS:
            labels = [f"{key}:{value}" for key, value in target.labels]
            return any(fnmatch.fnmatchcase(label, p) for label in labels for p in label_patterns)
        name = {TargetKind.ALL: ALL, TargetKind.ANY: ANY}.get(target.kind, target.hostname)
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in host_patterns)

    def may_see_job(self, record: JobRecord) -> bool:
        """Whether the key may see (read, list, cancel, delete) a job: when it may reach
        the job's target, by :meth:`may_target`. A target that does not parse is seen
        only by keys without target patterns."""
        if not self.targets:
            return True
        try:
            return self.may_target(parse_target(record.job.target))
        except TargetSyntaxError:
            return False

    def may_reach_node(self, hostname: str, labels: Mapping[str, str]) -> bool:
        """Whether some target the key may use addresses this node: its hostname, a
        selector of its labels, ``_all`` or ``_any`` (each decided by :meth:`may_target`)."""
        candidates = [
            Target(TargetKind.HOST, hostname=hostname),
            Target(TargetKind.ALL),
            Target(TargetKind.ANY),
        ]
        if labels:
            candidates.append(Target(TargetKind.LABELS, labels=tuple(sorted(labels.items()))))
        return any(self.may_target(target) for target in candidates)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode(errors="surrogateescape")).digest()


def has_expired(expires_at: float | None, now: float) -> bool:
    """The one expiry rule: a key is refused from its ``expires_at`` on."""
    return expires_at is not None and now >= expires_at


def format_time(timestamp: float) -> str:
    """``2026-12-03T08:00:00Z``: how expiry times are shown."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: str) -> int:
    """Seconds in ``30d``, ``12h``, ``90m`` or ``3600s`` (a whole number and one unit).

    Raises:
        ValueError: anything else, or more than 100 years.
    """
    match = DURATION_RE.fullmatch(text)
    seconds = int(match["count"]) * DURATION_UNITS_S[match["unit"]] if match else 0
    if not seconds or seconds > MAX_DURATION_S:
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number above 0 and a unit "
            "s, m, h or d (e.g. 30d, 12h, 90m, 3600s), at most 100 years"
        )
    return seconds


def _entries(stored: list[StoredKey]) -> tuple[tuple[bytes, ApiKey], ...]:
    return tuple(
        (
            bytes.fromhex(entry.sha256),
            ApiKey(
                entry.name,
                frozenset(entry.permissions),
                tuple(entry.targets),
                entry.expires_at,
                entry.max_hosts,
            ),
        )
        for entry in stored
    )


class KeyStore:
    """The keys a controller accepts. One object lives as long as the controller;
    :meth:`replace` swaps its whole content at once when the keys file is reloaded."""

    def __init__(self, stored: list[StoredKey]) -> None:
        self._entries = _entries(stored)

    def replace(self, stored: list[StoredKey]) -> None:
        """Accept exactly ``stored`` from now on (one assignment: a request sees
        either the old keys or the new ones, never a mix)."""
        self._entries = _entries(stored)

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        """Raises: KeysFileError when the file is missing, unreadable or invalid."""
        return cls(read_keys_file(path).keys)

    def authenticate(self, presented: str, now: float | None = None) -> ApiKey | None:
        """The key whose hash matches, comparing against every entry in constant time;
        None when none does. Expiry is checked against ``now`` (default: the current
        time) on every call, so a key stops working the moment it expires.

        Raises:
            KeyExpired: the matching key has expired.
        """
        digest = hash_key(presented)
        found: ApiKey | None = None
        for stored_digest, api_key in self._entries:
            if hmac.compare_digest(stored_digest, digest):
                found = api_key
        if found is None or found.expires_at is None:
            return found
        if has_expired(found.expires_at, time.time() if now is None else now):
            raise KeyExpired(found.name, found.expires_at)
        return found


def read_keys_file(path: Path) -> KeysFile:
    """Raises: KeysFileError when the file is missing, unreadable or invalid."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeysFileError(f"cannot read keys file {path}: {exc.strerror}") from exc
    try:
        keys_file = msgspec.json.decode(data, type=KeysFile)
    except msgspec.DecodeError as exc:
        raise KeysFileError(f"keys file {path} is invalid: {exc}") from exc
    for entry in keys_file.keys:
        _check_entry(entry, path)
    return keys_file


def _check_entry(entry: StoredKey, path: Path) -> None:
    unknown = set(entry.permissions) - PERMISSIONS
    if unknown:
        raise KeysFileError(f"keys file {path}: key {entry.name!r} has unknown {sorted(unknown)}")
    try:
        digest = bytes.fromhex(entry.sha256)
    except ValueError:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise KeysFileError(f"keys file {path}: key {entry.name!r} has no valid sha256")
    if entry.expires_at is not None and not 0 < entry.expires_at < LATEST_EXPIRY:
        raise KeysFileError(f"keys file {path}: key {entry.name!r} has an invalid expires_at")
    if not valid_max_hosts(entry.max_hosts):
        raise KeysFileError(f"keys file {path}: key {entry.name!r} has an invalid max_hosts")


def valid_max_hosts(max_hosts: int | None) -> bool:
    """Whether a key's ``max_hosts`` is unset or 1..MAX_MAX_HOSTS."""
    return max_hosts is None or 1 <= max_hosts <= MAX_MAX_HOSTS


def check_new_key(name: str, permissions: list[str], max_hosts: int | None) -> None:
    """Raises: KeysFileError: the name is empty, a permission is unknown, or
    ``max_hosts`` is given and not 1..MAX_MAX_HOSTS."""
    if not name:
        raise KeysFileError("a key needs a name")
    if not valid_max_hosts(max_hosts):
        raise KeysFileError(f"max_hosts must be 1..{MAX_MAX_HOSTS}, not {max_hosts}")
    unknown = set(permissions) - PERMISSIONS
    if unknown:
        raise KeysFileError(
            f"unknown permission(s) {sorted(unknown)}; known: {sorted(PERMISSIONS)}"
        )


def create_key(
    path: Path,
    *,
    name: str,
    permissions: list[str],
    targets: list[str],
    expires_at: float | None = None,
    max_hosts: int | None = None,
) -> str:
    """Add a new random key to the keys file (created if missing, mode 0600),
    refused from ``expires_at`` (unix time) on when given, running its commands on at
    most ``max_hosts`` hosts at once when given.

    Returns the key itself, which is stored nowhere.

    Raises:
        KeysFileError: the name is taken or empty, a permission is unknown,
            ``max_hosts`` is not 1..MAX_MAX_HOSTS, or the file cannot be read or written.
    """
    check_new_key(name, permissions, max_hosts)
    keys_file = read_keys_file(path) if path.exists() else KeysFile()
    if any(entry.name == name for entry in keys_file.keys):
        raise KeysFileError(f"keys file {path} already has a key named {name!r}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    keys_file.keys.append(
        StoredKey(
            name=name,
            sha256=hash_key(key).hex(),
            permissions=sorted(set(permissions)),
            targets=targets,
            created_at=time.time(),
            expires_at=expires_at,
            max_hosts=max_hosts,
        )
    )
    _write_keys_file(path, keys_file)
    return key


def revoke_key(path: Path, name: str) -> None:
    """Remove the key named ``name`` from the keys file. Controllers refuse it once
    they have reloaded the file (at once on SIGHUP, else within ``keys_reload_interval_s``).

    Raises:
        UnknownKeyName: no key has that name.
        KeysFileError: the file cannot be read, is invalid, or cannot be written.
    """
    keys_file = read_keys_file(path)
    kept = [entry for entry in keys_file.keys if entry.name != name]
    if len(kept) == len(keys_file.keys):
        raise UnknownKeyName(f"keys file {path} has no key named {name!r}")
    _write_keys_file(path, KeysFile(keys=kept))


def _write_keys_file(path: Path, keys_file: KeysFile) -> None:
    _write_private(path, msgspec.json.format(msgspec.json.encode(keys_file)) + b"\n")


def _write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a file only its owner can read."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        temporary.replace(path)
    except OSError as exc:
        raise KeysFileError(f"cannot write keys file {path}: {exc.strerror}") from exc
