"""A real LDAP directory for the identity-source tests: Debian's ``slapd``, started and seeded here.

The session fixture :func:`slapd` writes a ``slapd.conf`` (mdb database ``dc=example,dc=org``,
ACLs that let a read-only service account search and users bind), a private CA and a server
certificate for ``127.0.0.1``/``localhost`` (:mod:`moorage.certs`), starts ``slapd`` in the
foreground on two free ports (``ldap://`` with StartTLS, ``ldaps://``) and seeds ``ou=people``
and ``ou=groups`` with ``ldapadd`` (Debian's ldap-utils). Tests add their own users and groups
with unique names through :class:`Directory` (as the directory's administrator), so they share
the session's server without interfering. Only the process started here is stopped at the end.
Under ``CI=true`` a missing ``slapd`` fails the tests that need it (scripts/test.sh installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ldap3 import MODIFY_ADD, MODIFY_DELETE, Connection, Server

from moorage.certs import make_ca, make_server
from tests.conftest import skip_or_fail

__all__ = ["Directory", "slapd"]

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "directory-root-secret"
SERVICE_DN = f"cn=reader,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "reader-secret-123"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
TLSCACertificateFile {dir}/ca.crt
TLSCertificateFile {dir}/server.crt
TLSCertificateKeyFile {dir}/server.key

database mdb
suffix "{suffix}"
rootdn "{root}"
rootpw {root_password}
directory {dir}/data
maxsize 104857600
index uid,cn,member,memberUid eq
access to attrs=userPassword
    by dn.exact="{root}" write
    by anonymous auth
    by * none
access to *
    by dn.exact="{service}" read
    by self read
    by * none
"""

_SEED = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{suffix}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{suffix}
objectClass: organizationalUnit
ou: services

dn: {service}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {service_password}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Directory:
    """The running directory: URLs, the CA that signed its certificate, and seeding helpers."""

    ldap_url: str
    ldaps_url: str
    ca_file: str
    workdir: Path

    def _admin(self) -> Connection:
        conn = Connection(Server(self.ldap_url), ROOT_DN, ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)
        return conn

    def settings(self, **overrides: object) -> dict[str, str]:
        """``MOORAGE_AUTH__LDAP__…`` variables for a source bound to this directory (StartTLS)."""
        env = {
            "MOORAGE_AUTH__SOURCES": "[local, ldap, robot]",
            "MOORAGE_AUTH__LDAP__URL": self.ldap_url,
            "MOORAGE_AUTH__LDAP__START_TLS": "true",
            "MOORAGE_AUTH__LDAP__CA_FILE": self.ca_file,
            "MOORAGE_AUTH__LDAP__BIND_DN": SERVICE_DN,
            "MOORAGE_AUTH__LDAP__BIND_PASSWORD": SERVICE_PASSWORD,
            "MOORAGE_AUTH__LDAP__USER_BASE": PEOPLE,
            "MOORAGE_AUTH__LDAP__USER_FILTER": "(objectClass=inetOrgPerson)",
            "MOORAGE_AUTH__LDAP__GROUP_BASE": GROUPS,
            "MOORAGE_AUTH__LDAP__GROUP_FILTER": "(objectClass=groupOfNames)",
            "MOORAGE_AUTH__LDAP__GROUP_MEMBERSHIP_ATTRIBUTE": "member",
        }
        env.update({f"MOORAGE_AUTH__LDAP__{key.upper()}": str(value) for key, value in overrides.items()})
        return env

    @staticmethod
    def user_dn(uid: str) -> str:
        return f"uid={uid},{PEOPLE}"

    @staticmethod
    def group_dn(cn: str) -> str:
        return f"cn={cn},{GROUPS}"

    def add_user(self, uid: str, password: str, *, mail: str | None = None) -> str:
        conn = self._admin()
        try:
            conn.add(self.user_dn(uid), ["inetOrgPerson"], {
                "uid": uid, "cn": f"User {uid}", "sn": uid, "userPassword": password,
                "mail": mail or f"{uid}@example.org",
            })
        finally:
            conn.unbind()
        return self.user_dn(uid)

    def delete_user(self, uid: str) -> None:
        conn = self._admin()
        try:
            conn.delete(self.user_dn(uid))
        finally:
            conn.unbind()

    def add_group(self, cn: str, *member_uids: str) -> str:
        """A ``groupOfNames``, which needs a member at all times: the service account is always one."""
        conn = self._admin()
        try:
            members = [SERVICE_DN, *(self.user_dn(uid) for uid in member_uids)]
            conn.add(self.group_dn(cn), ["groupOfNames"], {"cn": cn, "member": members})
        finally:
            conn.unbind()
        return self.group_dn(cn)

    def set_membership(self, cn: str, uid: str, member: bool) -> None:
        conn = self._admin()
        try:
            change = MODIFY_ADD if member else MODIFY_DELETE
            conn.modify(self.group_dn(cn), {"member": [(change, [self.user_dn(uid)])]})
        finally:
            conn.unbind()


def _start(workdir: Path) -> tuple[Directory, subprocess.Popen[bytes]]:
    (workdir / "data").mkdir(parents=True)
    make_ca(workdir)
    make_server(workdir, workdir / "ca.crt", workdir / "ca.key", ["127.0.0.1", "localhost"])
    (workdir / "slapd.conf").write_text(_CONF.format(
        dir=workdir, suffix=SUFFIX, root=ROOT_DN, root_password=ROOT_PASSWORD, service=SERVICE_DN,
    ))
    plain, secure = _free_port(), _free_port()
    urls = f"ldap://127.0.0.1:{plain}/ ldaps://127.0.0.1:{secure}/"
    # -d keeps slapd in the foreground (a child we can stop by its pid); 0: no debug output.
    with (workdir / "slapd.log").open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(["slapd", "-f", str(workdir / "slapd.conf"), "-h", urls, "-d", "0"],
                                   stdout=log, stderr=subprocess.STDOUT)
    directory = Directory(f"ldap://127.0.0.1:{plain}", f"ldaps://127.0.0.1:{secure}",
                          str(workdir / "ca.crt"), workdir)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}: {(workdir / 'slapd.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", plain), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("slapd did not listen within 30 s") from None
            time.sleep(0.1)
    seed = _SEED.format(suffix=SUFFIX, service=SERVICE_DN, service_password=SERVICE_PASSWORD)
    subprocess.run(["ldapadd", "-x", "-H", directory.ldap_url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
                   input=seed.encode(), check=True, capture_output=True, timeout=30)
    return directory, process


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    """A seeded slapd for this session (see the module docstring)."""
    if shutil.which("slapd") is None or shutil.which("ldapadd") is None:
        skip_or_fail("slapd and ldapadd are not installed (Debian: apt-get install slapd ldap-utils)")
    workdir = tmp_path_factory.mktemp(f"slapd-{uuid.uuid4().hex[:6]}")
    try:
        directory, process = _start(workdir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        skip_or_fail(f"cannot start slapd: {exc}")
        raise  # unreachable: skip_or_fail always raises
    try:
        yield directory
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
