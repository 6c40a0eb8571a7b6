"""The one place that decides which certificate authorities an outbound connection trusts.

Every connection Moorage opens to another service (S3, Swift, an OIDC provider, an LDAP server,
a replication or proxy-cache endpoint, a webhook target) takes its TLS trust from a
:class:`TrustStore` built once from ``outbound.ca_bundle`` and ``outbound.system_cas``, so an
operator with a private CA sets one key instead of one per component.

Why *add* the bundle to the system store by default: a registry on a private network usually
talks to an internal S3 or LDAP signed by the company CA *and* to public endpoints (Slack,
a cloud OIDC provider) at the same time; replacing the system store would break the latter.
``outbound.system_cas: false`` trusts only the bundle.

A component's own, older setting (``storage.s3.cabundle``, ``storage.swift.cabundle``) is the
``extra`` argument: trusted in addition, never instead. ``skip_verify`` turns checking off for
that one component (test rigs only).

Libraries differ in what they accept: aiohttp and httpx take an :class:`ssl.SSLContext`
(:meth:`TrustStore.context`), botocore and ldap3 only a file path (:meth:`TrustStore.ca_file`
writes the system store and the bundles into one PEM file, named by its content, once).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrustStore", "TrustStoreError"]


class TrustStoreError(ValueError):
    """A CA bundle that cannot be read or holds no certificate; the message names the file and the fix."""


def _system_ca_file() -> Path | None:
    """OpenSSL's default CA file (Debian: /usr/lib/ssl/cert.pem → /etc/ssl/certs/ca-certificates.crt)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _read_bundle(path: str, key: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TrustStoreError(f"{key}: cannot read CA bundle {path}: {exc.strerror}; give a readable PEM file") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TrustStoreError(f"{key}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's PEM file")
    try:
        ssl.create_default_context(cadata=text)
    except ssl.SSLError as exc:
        raise TrustStoreError(f"{key}: {path} is not a valid PEM CA bundle ({exc.reason}); re-export the CA as PEM") from None
    return text


@dataclass(frozen=True, slots=True)
class TrustStore:
    """The CAs outbound TLS trusts: the system store (unless ``system`` is off) plus ``ca_bundle``."""

    ca_bundle: str | None = None
    system: bool = True
    _contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = field(default_factory=dict, compare=False,
                                                                           repr=False)
    _files: dict[str | None, str] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def check(self) -> None:
        """Read the bundle now; :class:`TrustStoreError` naming ``outbound.ca_bundle`` when it is unusable."""
        if self.ca_bundle:
            _read_bundle(self.ca_bundle, "outbound.ca_bundle")
        elif not self.system:
            raise TrustStoreError("outbound.system_cas is false but outbound.ca_bundle is not set: nothing would be "
                                  "trusted; set outbound.ca_bundle to your CA's PEM file")

    @property
    def custom(self) -> bool:
        """Whether anything beyond the system store is configured."""
        return bool(self.ca_bundle) or not self.system

    def _pems(self, extra: str | None) -> list[str]:
        pems = [_read_bundle(self.ca_bundle, "outbound.ca_bundle")] if self.ca_bundle else []
        if extra:
            pems.append(_read_bundle(extra, "cabundle"))
        return pems

    def context(self, extra: str | None = None, *, pem: str | None = None) -> ssl.SSLContext:
        """A client context that verifies hosts against this store, plus ``extra`` (a component's own bundle
        file) and ``pem`` (CA certificates as text, e.g. a replication endpoint's, kept in the database).

        Built once per ``(extra, pem)`` and shared: an :class:`ssl.SSLContext` is safe to use from many
        connections. :class:`TrustStoreError` when a bundle cannot be read, ``ssl.SSLError`` for bad ``pem``.
        """
        with self._lock:
            cached = self._contexts.get((extra, pem))
            if cached is not None:
                return cached
            context = ssl.create_default_context() if self.system else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            for bundle in self._pems(extra):
                context.load_verify_locations(cadata=bundle)
            if pem:
                context.load_verify_locations(cadata=pem)
            if len(self._contexts) >= 256:  # endpoints' CAs come and go; never grow without bound
                self._contexts.clear()
            self._contexts[(extra, pem)] = context
            return context

    def verify(self, extra: str | None = None, *, skip_verify: bool = False) -> ssl.SSLContext | bool:
        """What aiohttp's ``ssl=`` and httpx's ``verify=`` take: ``False`` to skip, else :meth:`context`."""
        return False if skip_verify else self.context(extra)

    def ca_file(self, extra: str | None = None, *, skip_verify: bool = False) -> str | bool:
        """What botocore's ``verify=`` (and ldap3's ``ca_certs_file``) take: ``False`` to skip, ``True`` for the
        library's own default store when nothing custom is configured, else the path of one PEM file holding
        the system CAs (unless ``system`` is off) and the bundles."""
        if skip_verify:
            return False
        if not self.custom and not extra:
            return True
        with self._lock:
            cached = self._files.get(extra)
            if cached is not None and Path(cached).is_file():
                return cached
            parts = []
            system = _system_ca_file() if self.system else None
            if system is not None:
                parts.append(system.read_text())
            parts.extend(self._pems(extra))
            text = "\n".join(part.strip() for part in parts) + "\n"
            name = f"moorage-ca-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pem"
            path = Path(tempfile.gettempdir()) / name
            if not path.is_file():
                # Public certificates only; written beside and renamed so a reader never sees half a file.
                fd, partial = tempfile.mkstemp(prefix=".moorage-ca-", dir=path.parent)
                with os.fdopen(fd, "w") as out:
                    out.write(text)
                os.chmod(partial, 0o644)
                os.replace(partial, path)
            self._files[extra] = str(path)
            return str(path)
