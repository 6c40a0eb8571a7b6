"""``moorage certs`` output and the shared outbound trust (:class:`moorage.net.tls.TrustStore`).

Handshakes are real TLS between two in-memory ends (``ssl.MemoryBIO``): a server context loaded
with what ``make_server`` wrote, a client context from the trust store.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509

from moorage.certs import CertError, make_ca, make_server
from moorage.config import ConfigError, load_settings
from moorage.net.tls import TrustStore, TrustStoreError


def _handshake(server_cert: Path, server_key: Path, client: ssl.SSLContext, host: str) -> None:
    """Run a TLS handshake in memory; raises ``ssl.SSLCertVerificationError`` when the client refuses."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_cert, server_key)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(c_in, c_out, server_hostname=host)
    server_end = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end, out, peer_in in (("client", client_end, c_out, s_in), ("server", server_end, s_out, c_in)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.fixture
def issued(tmp_path: Path) -> Path:
    make_ca(tmp_path)
    make_server(tmp_path, tmp_path / "ca.crt", tmp_path / "ca.key", ["registry.example.test", "10.1.2.3", "::1"])
    return tmp_path


def test_server_certificate_names_every_host_and_is_for_servers_only(issued: Path) -> None:
    leaf, ca = x509.load_pem_x509_certificates((issued / "server.crt").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["registry.example.test"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3", "::1"]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.issuer == ca.subject
    assert (issued / "server.key").stat().st_mode & 0o777 == 0o600


def test_trust_store_with_the_bundle_verifies_every_san_and_nothing_else(issued: Path) -> None:
    trust = TrustStore(str(issued / "ca.crt"))
    for host in ("registry.example.test", "10.1.2.3"):
        _handshake(issued / "server.crt", issued / "server.key", trust.context(), host)
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        _handshake(issued / "server.crt", issued / "server.key", trust.context(), "other.example.test")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer|self.signed"):
        _handshake(issued / "server.crt", issued / "server.key", TrustStore().context(), "registry.example.test")


def test_a_components_own_bundle_adds_to_the_shared_one(issued: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_ca(other)
    trust = TrustStore(str(other / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(issued / "server.crt", issued / "server.key", trust.context(), "registry.example.test")
    _handshake(issued / "server.crt", issued / "server.key", trust.context(str(issued / "ca.crt")),
               "registry.example.test")


def test_ca_certificates_as_text_add_to_the_store(issued: Path) -> None:
    """A replication or proxy endpoint's CA, kept in the database as PEM text."""
    trust = TrustStore()
    pem = (issued / "ca.crt").read_text()
    _handshake(issued / "server.crt", issued / "server.key", trust.context(pem=pem), "registry.example.test")
    assert trust.context(pem=pem) is trust.context(pem=pem)  # built once, shared
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(issued / "server.crt", issued / "server.key", trust.context(), "registry.example.test")


def test_ca_file_holds_the_system_store_and_the_bundle_for_path_only_libraries(issued: Path) -> None:
    assert TrustStore().ca_file() is True  # nothing custom: the library's own default
    assert TrustStore(str(issued / "ca.crt")).ca_file(skip_verify=True) is False
    path = TrustStore(str(issued / "ca.crt")).ca_file()
    assert isinstance(path, str)
    text = Path(path).read_text()
    assert (issued / "ca.crt").read_text().strip() in text
    assert text.count("BEGIN CERTIFICATE") > 1  # the system CAs are kept
    only = TrustStore(str(issued / "ca.crt"), system=False).ca_file()
    assert isinstance(only, str) and Path(only).read_text().count("BEGIN CERTIFICATE") == 1
    _handshake(issued / "server.crt", issued / "server.key", ssl.create_default_context(cafile=path),
               "registry.example.test")


def test_bad_bundles_and_tls_files_stop_start_up_naming_the_key(issued: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TrustStoreError, match="outbound.ca_bundle"):
        TrustStore(str(tmp_path / "junk.pem")).check()
    with pytest.raises(ConfigError, match=r"outbound\.ca_bundle: .*missing\.pem"):
        load_settings(environ={"MOORAGE_OUTBOUND__CA_BUNDLE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match=r"http\.tls\.key: set both"):
        load_settings(environ={"MOORAGE_HTTP__TLS__CERTIFICATE": str(issued / "server.crt")})
    with pytest.raises(ConfigError, match=r"http\.tls\.certificate: .* are not a PEM certificate and its private key"):
        load_settings(environ={"MOORAGE_HTTP__TLS__CERTIFICATE": str(issued / "server.crt"),
                               "MOORAGE_HTTP__TLS__KEY": str(issued / "ca.key")})
    settings = load_settings(environ={"MOORAGE_HTTP__TLS__CERTIFICATE": str(issued / "server.crt"),
                                      "MOORAGE_HTTP__TLS__KEY": str(issued / "server.key"),
                                      "MOORAGE_OUTBOUND__CA_BUNDLE": str(issued / "ca.crt")})
    assert settings.http.tls.enabled
    assert settings.outbound.trust_store().ca_bundle == str(issued / "ca.crt")


def test_make_commands_refuse_bad_hosts_overwrites_and_foreign_keys(issued: Path, tmp_path: Path) -> None:
    with pytest.raises(CertError, match="--host 'https://x.example'"):
        make_server(tmp_path / "a", issued / "ca.crt", issued / "ca.key", ["https://x.example"])
    with pytest.raises(CertError, match="exists"):
        make_ca(issued)
    other = tmp_path / "other"
    make_ca(other)
    with pytest.raises(CertError, match="is not the key of"):
        make_server(tmp_path / "b", issued / "ca.crt", other / "ca.key", ["x.example"])
    assert not (tmp_path / "b" / "server.crt").exists()
