"""A private CA and server certificates for serving HTTPS without a public CA (``moorage certs``).

What the certificates carry, and why:

* Keys are ECDSA P-256: every client that speaks to registries (Go's crypto/tls in docker,
  podman, skopeo, containerd, helm, oras, crane; OpenSSL; Python) accepts them, and they are
  made in milliseconds.
* The CA is ``CA:TRUE, pathlen:0`` with ``keyCertSign``/``cRLSign``: it can sign server
  certificates and nothing that signs further.
* A server certificate names every host name and address clients use in ``subjectAltName``.
  Go has ignored the Common Name since 1.15, so a name missing from the SANs fails with
  "x509: certificate is not valid for any names" however the CN reads. IP addresses go in as
  ``IPAddress`` entries (a client connecting to ``10.0.0.5:5000`` checks those, not DNS names).
* ``extendedKeyUsage = serverAuth`` and a lifetime of 397 days by default (Apple's clients refuse
  longer-lived server certificates, and short lives make rotation a habit).

Private keys are written with mode 0600; existing files are never overwritten unless asked.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertError", "IssuedFiles", "make_ca", "make_server", "split_names"]

CA_DAYS = 3650
SERVER_DAYS = 397


class CertError(ValueError):
    """A certificate could not be made; the message says which option to change."""


@dataclass(frozen=True, slots=True)
class IssuedFiles:
    certificate: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    if path.exists() and not force:
        raise CertError(f"{path} exists; remove it, choose another --out directory, or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)  # an existing file (with --force) keeps its old mode otherwise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(out: Path, *, common_name: str = "Moorage private CA", days: int = CA_DAYS,
            force: bool = False) -> IssuedFiles:
    """Write ``ca.crt`` and ``ca.key`` (0600) into ``out``; :class:`CertError` when they exist."""
    if days < 1:
        raise CertError("--days must be at least 1")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _now() - datetime.timedelta(minutes=5)  # clients with a clock slightly behind
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = IssuedFiles(out / "ca.crt", out / "ca.key")
    for path in (files.certificate, files.key):
        if path.exists() and not force:
            raise CertError(f"{path} exists; remove it, choose another --out directory, or pass --force")
    _write(files.key, _key_pem(key), 0o600, force)
    _write(files.certificate, cert.public_bytes(serialization.Encoding.PEM), 0o644, force)
    return files


def split_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """``--host`` values as SAN entries: IP addresses as ``IPAddress``, the rest as DNS names."""
    entries: list[x509.GeneralName] = []
    for raw in names:
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            try:
                entries.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
            except ValueError:
                label = name.lower().rstrip(".")
                if not label or any(c.isspace() or c in "/:@" for c in label) or not label.isascii():
                    raise CertError(f"--host {name!r}: give a DNS name (registry.example.com, *.example.com) "
                                    "or an IP address, without a scheme or port") from None
                entries.append(x509.DNSName(label))
    if not entries:
        raise CertError("--host: name at least one host name or IP address clients will connect to")
    return entries


def _load_ca(ca_cert: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except OSError as exc:
        raise CertError(f"cannot read {exc.filename}: {exc.strerror}; make a CA first with 'moorage certs make-ca'"
                        ) from None
    except ValueError as exc:
        raise CertError(f"{ca_cert} / {ca_key} are not a PEM certificate and an unencrypted PEM key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{ca_key}: only EC keys made by 'moorage certs make-ca' are supported")
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise CertError(f"{ca_key} is not the key of {ca_cert}; pass the pair 'moorage certs make-ca' wrote")
    return cert, key


def make_server(out: Path, ca_cert: Path, ca_key: Path, hosts: Sequence[str], *, days: int = SERVER_DAYS,
                force: bool = False) -> IssuedFiles:
    """Write ``server.crt`` (the certificate, then the CA) and ``server.key`` (0600) into ``out``.

    The first ``--host`` is the Common Name; every one of them is a SAN.
    """
    if days < 1:
        raise CertError("--days must be at least 1")
    sans = split_names(hosts)
    ca, signer = _load_ca(ca_cert, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    first = sans[0].value
    start = _now() - datetime.timedelta(minutes=5)
    end = min(start + datetime.timedelta(days=days), ca.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(first))]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )
    files = IssuedFiles(out / "server.crt", out / "server.key")
    for path in (files.certificate, files.key):
        if path.exists() and not force:
            raise CertError(f"{path} exists; remove it, choose another --out directory, or pass --force")
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    _write(files.key, _key_pem(key), 0o600, force)
    _write(files.certificate, chain, 0o644, force)
    return files
