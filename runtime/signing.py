"""Signed jobs: an ed25519 signature over a job message's exact bytes, in NATS headers.

The controller (and any direct publisher) holds an nkey *seed* (``SU...``) and
signs each job payload; agents hold the trusted *public* keys (``U...``) and
verify before they take a job. Keys use the NATS nkey encoding (the ``nkeys``
package), so ``nk -gen user`` and ``nexec signing-key create`` make the same
kind of key.

Headers of a signed job message:

- ``Nexec-Signer``: the signer's public key, ``U`` followed by 55 base32 characters;
- ``Nexec-Signature``: the ed25519 signature of the payload, standard base64.

What a signature does not cover, the agent checks itself: the payload holds
the target, the job id and the deadline, so a job cannot be redirected to
another host, and a replay is refused once its id was taken or its deadline
passed (see agentd/intake.py).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nkeys

from schemas.untrusted import shown

SIGNER_HEADER = "Nexec-Signer"
SIGNATURE_HEADER = "Nexec-Signature"

_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64


class SigningKeyError(ValueError):
    """A seed or public key is malformed, of the wrong kind, or unreadable."""


class SignatureRejected(Exception):
    """A job's signature is missing, from an untrusted key, or does not match."""


def create_seed() -> bytes:
    """A new random user nkey seed (``SU...``)."""
    return bytes(nkeys.encode_seed(os.urandom(_ED25519_KEY_BYTES), nkeys.PREFIX_BYTE_USER))


def write_seed_file(path: Path) -> JobSigner:
    """Create ``path`` (mode 0600, never overwriting) holding a new seed; return its signer.

    Raises:
        FileExistsError: ``path`` exists.
        OSError: it cannot be written.
    """
    seed = create_seed()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(seed + b"\n")
    return JobSigner(seed)


class JobSigner:
    """Signs job payloads with one seed."""

    def __init__(self, seed: bytes) -> None:
        """Raises:
        SigningKeyError: ``seed`` is not a user nkey seed."""
        try:
            prefix, _ = nkeys.decode_seed(seed)
            self._key_pair = nkeys.from_seed(bytearray(seed))
        except (nkeys.ErrInvalidSeed, nkeys.ErrInvalidPrefixByte, binascii.Error) as exc:
            raise SigningKeyError("not an nkey seed (expected 'SU...')") from exc
        if prefix != nkeys.PREFIX_BYTE_USER:
            raise SigningKeyError("not a user nkey seed (expected 'SU...')")
        self.public_key: str = bytes(self._key_pair.public_key).decode()

    @classmethod
    def from_file(cls, path: Path) -> JobSigner:
        """Read a seed file (its first non-empty line; ``nexec signing-key create`` writes one).

        Raises:
            SigningKeyError: the file cannot be read or holds no user seed.
        """
        try:
            text = path.read_text(encoding="ascii")
        except OSError as exc:
            raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SigningKeyError(f"signing key file {path} is not an nkey seed") from exc
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise SigningKeyError(f"signing key file {path} is empty")
        try:
            return cls(lines[0].encode())
        except SigningKeyError as exc:
            raise SigningKeyError(f"signing key file {path}: {exc}") from exc

    def headers(self, payload: bytes) -> dict[str, str]:
        """The NATS headers that sign ``payload``."""
        signature = bytes(self._key_pair.sign(payload))
        return {
            SIGNER_HEADER: self.public_key,
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        }


def decode_public_key(text: str) -> nacl.signing.VerifyKey:
    """The ed25519 key of a user public nkey (``U...``).

    Raises:
        SigningKeyError: not a well-formed user public key (prefix, length, checksum).
    """
    try:
        raw = base64.b32decode(text.strip() + "=" * (-len(text.strip()) % 8))
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError(f"not a public nkey: {text!r}") from exc
    if len(raw) != 1 + _ED25519_KEY_BYTES + 2 or raw[0] != nkeys.PREFIX_BYTE_USER:
        raise SigningKeyError(f"not a user public nkey (expected 'U...'): {text!r}")
    body, checksum = raw[:-2], raw[-2:]
    if nkeys.crc16(bytearray(body)).to_bytes(2, "little") != checksum:
        raise SigningKeyError(f"public nkey with a bad checksum: {text!r}")
    return nacl.signing.VerifyKey(body[1:])


class SignatureVerifier:
    """Checks that a job payload was signed by one of the trusted public keys."""

    def __init__(self, trusted_public_keys: Iterable[str]) -> None:
        """Raises:
        SigningKeyError: one of the keys is not a user public nkey."""
        self._trusted = {key.strip(): decode_public_key(key) for key in trusted_public_keys}

    def verify(self, payload: bytes, headers: Mapping[str, str] | None) -> str:
        """Return the public key that signed ``payload``.

        Raises:
            SignatureRejected: no signature, a signer not trusted, or a signature
                that does not match the payload (forged or altered).
        """
        signer = (headers or {}).get(SIGNER_HEADER, "")
        encoded_signature = (headers or {}).get(SIGNATURE_HEADER, "")
        if not signer or not encoded_signature:
            raise SignatureRejected(
                f"unsigned job: this agent runs only jobs signed by a trusted key "
                f"({SIGNER_HEADER} and {SIGNATURE_HEADER} headers)"
            )
        verify_key = self._trusted.get(signer)
        if verify_key is None:
            raise SignatureRejected(f"job signed by an untrusted key {shown(signer)}")
        try:
            signature = base64.b64decode(encoded_signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureRejected("forged job: the signature is not base64") from exc
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            raise SignatureRejected("forged job: the signature is not 64 bytes")
        try:
            verify_key.verify(payload, signature)
        except nacl.exceptions.BadSignatureError as exc:
            raise SignatureRejected(
                f"forged or altered job: the signature does not match its content ({signer})"
            ) from exc
        return signer
