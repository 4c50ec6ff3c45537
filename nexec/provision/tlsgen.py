"""A self-signed TLS setup for nats-server and its clients, for ``nexec nats-auth``.

One private CA signs a server certificate (names and addresses given; used for
client connections and cluster routes alike) and one client certificate per
NATS user, so that the server can require mutual TLS. Keys are ECDSA P-256,
written with mode 0600; certificates (mode 0644) are valid for ``VALID_DAYS``.

For production, certificates from your own PKI do the same job: point the
``tls`` blocks and the ``NEXEC_NATS_TLS_*`` settings at them.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nexec.provision.files import PRIVATE, PUBLIC, write_file

VALID_DAYS = 825
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class TlsSetup:
    ca: Path
    server: CertFiles
    clients: dict[str, CertFiles]
    """Per NATS user name."""


@dataclass(frozen=True, slots=True)
class _Authority:
    """The private CA, while it issues the certificates."""

    key: ec.EllipticCurvePrivateKey
    name: x509.Name
    out_dir: Path


def write_tls_setup(out_dir: Path, hosts: list[str], client_names: list[str]) -> TlsSetup:
    """Write ``ca.pem``, ``server.pem``/``server-key.pem`` (valid for ``hosts``: DNS
    names or IP addresses) and ``<name>.pem``/``<name>-key.pem`` per client.

    Raises:
        ValueError: ``hosts`` is empty.
        OSError: the directory cannot be written.
    """
    if not hosts:
        raise ValueError("the server certificate needs at least one host name or address")
    out_dir.mkdir(parents=True, exist_ok=True)
    ca, ca_path = _write_ca(out_dir)
    server_files = _issue(ca, hosts[0], "server", server_hosts=hosts)
    clients = {name: _issue(ca, name, f"client-{name}") for name in client_names}
    return TlsSetup(ca=ca_path, server=server_files, clients=clients)


def _write_ca(out_dir: Path) -> tuple[_Authority, Path]:
    """A new CA: its certificate written to ``ca.pem``, its key to ``ca-key.pem``.

    Raises:
        OSError: a file cannot be written.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nexec NATS CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = write_file(
        out_dir / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), mode=PUBLIC
    )
    _write_key(out_dir / "ca-key.pem", ca_key)
    return _Authority(ca_key, ca_name, out_dir), ca_path


def _issue(
    ca: _Authority, name: str, file_stem: str, *, server_hosts: list[str] | None = None
) -> CertFiles:
    """A certificate for ``name`` signed by ``ca``, written with its key; a client's,
    or with ``server_hosts`` (its alternative names) a server's that is a client's too.

    Raises:
        OSError: a file cannot be written.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = _builder(subject, ca.name, key.public_key()).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    )
    if server_hosts is not None:  # routes between nodes connect as clients with the same one
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(host) for host in server_hosts]),
            critical=False,
        )
    cert = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
        ca.key, hashes.SHA256()
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return CertFiles(
        cert=write_file(ca.out_dir / f"{file_stem}.pem", pem, mode=PUBLIC),
        key=_write_key(ca.out_dir / f"{file_stem}-key.pem", key),
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return write_file(path, pem, mode=PRIVATE)
