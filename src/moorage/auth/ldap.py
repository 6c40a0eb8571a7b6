"""The LDAP / Active Directory identity source (``ldap`` in ``auth.sources``; settings ``auth.ldap``).

A login: bind as the service account, find the user (``user_base``, ``user_filter`` and
``uid_attribute`` equal to the login name, escaped as RFC 4515 says), bind as the user's DN with
the password, then search the groups that list the user (``group_filter`` and
``group_membership_attribute`` equal to the user's DN, or their login name for ``memberUid``).
Groups are reported by DN (Harbor's LDAP group type 1); those an administrator created in
``/usergroups`` become the user's groups, which project memberships then give rights through.
``admin_group_dn`` makes its members system administrators.

Transport: ``ldaps://`` or StartTLS on ``ldap://``, with the certificate checked against the
outbound trust (``outbound.ca_bundle`` and the system's CAs) plus ``auth.ldap.ca_file``, and the
host name. Every operation runs in a worker thread
(ldap3 is synchronous) with ``timeout`` on connecting and on each answer.

Security: an empty password is refused before any bind (a simple bind with an empty password
is an *unauthenticated* bind that many directories accept, RFC 4513 section 5.1.2); login names
holding filter characters never reach this module (:meth:`IdentityService._injection`) and
every value put in a filter is escaped all the same. ldap3's exceptions are translated here:
:class:`SourceError` (directory unreachable, service account refused) carries what to fix.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import structlog
from ldap3 import BASE, LEVEL, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from moorage.auth.groups import LDAP, GroupRef, normalize_dn
from moorage.auth.identity import IdentityError, User
from moorage.auth.ldap_settings import LdapSettings
from moorage.auth.sources import ExternalAccount, SourceError, UnknownAccount
from moorage.net.tls import TrustStore

__all__ = ["LdapSource"]

log = structlog.get_logger("moorage.identity.ldap")

_SCOPES = {"base": BASE, "one": LEVEL, "subtree": SUBTREE}


@dataclass(frozen=True, slots=True)
class _Entry:
    dn: str
    attributes: dict[str, Any]

    def first(self, name: str) -> str | None:
        value = self.attributes.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        return None if value in (None, "") else str(value)


class LdapSource:
    """:class:`~moorage.auth.sources.AccountSource` backed by an LDAP directory."""

    name = "ldap"
    group_type = LDAP
    creates_groups = False

    def __init__(self, settings: LdapSettings, *, trust: TrustStore | None = None) -> None:
        """``trust``: the process's outbound CA trust (``outbound.ca_bundle``); ``auth.ldap.ca_file`` is
        trusted in addition to it (:mod:`moorage.net.tls`)."""
        self.settings = settings
        context = (trust or TrustStore()).verify(settings.ca_file, skip_verify=not settings.verify_certificate)
        tls = _ContextTls(context if isinstance(context, ssl.SSLContext) else None)
        self._server = Server(settings.url, use_ssl=settings.url.lower().startswith("ldaps://"), tls=tls,
                              connect_timeout=settings.timeout, get_info="NO_INFO")
        self._admin_group = normalize_dn(settings.admin_group_dn) if settings.admin_group_dn else None

    # -- the AccountSource interface -----------------------------------------------------------
    async def authenticate(self, username: str, password: str, user: User | None) -> ExternalAccount | None:
        if not password:
            return None  # never an unauthenticated bind (see the module docstring)
        return await asyncio.to_thread(self._authenticate, username, password)

    async def refresh(self, user: User) -> ExternalAccount | None:
        try:
            return await asyncio.to_thread(self._lookup, user.username)
        except UnknownAccount:
            return None

    async def group_exists(self, dn: str) -> bool:
        """Whether ``dn`` names a group entry (checked when an administrator adds an LDAP group)."""
        return await asyncio.to_thread(self._group_exists, dn)

    async def search_groups(self, name: str | None, dn: str | None) -> list[GroupRef]:
        """Directory groups named ``name`` (the ``group_name_attribute``, exactly) or at ``dn``
        (Harbor's ``/ldap/groups/search``, which administrators use before mapping a group)."""
        return await asyncio.to_thread(self._search_groups, name, dn)

    # -- in the worker thread ------------------------------------------------------------------
    def _connect(self, who: str, password: str, *, service: bool) -> Connection | None:
        """A bound connection, or ``None`` when the directory refused these credentials (a user's
        wrong password). A refused service account, or no directory, is a :class:`SourceError`."""
        # ldap3 packs receive_timeout into a C struct: whole seconds.
        conn = Connection(self._server, user=who or None, password=password or None, auto_bind="NONE",
                          receive_timeout=math.ceil(self.settings.timeout), raise_exceptions=False, read_only=True)
        bound = False
        try:
            conn.open()
            conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see _ContextTls.wrap_socket
            if self.settings.start_tls and not conn.start_tls():
                raise SourceError(f"StartTLS with {self.settings.url} failed ({conn.result.get('description')}); "
                                  "check auth.ldap.ca_file and that the directory offers StartTLS")
            bound = bool(conn.bind())
            result = conn.result or {}
        except LDAPException as exc:
            raise SourceError(f"cannot reach the directory at {self.settings.url}: {exc}; check auth.ldap.url, "
                              "the network and the CA (outbound.ca_bundle or auth.ldap.ca_file)") from None
        finally:
            if not bound:
                _close(conn)
        if bound:
            return conn
        if service:
            raise SourceError(
                f"the directory refused the service account {who!r} ({result.get('description')}); check "
                "auth.ldap.bind_dn and auth.ldap.bind_password"
            )
        if result.get("description") != "invalidCredentials":
            log.warning("ldap_user_bind_refused", dn=who, result=result.get("description"),
                        message=result.get("message"))
        return None

    def _search(self, conn: Connection, base: str, search_filter: str, scope: str,
                attributes: list[str], limit: int = 0) -> list[_Entry]:
        try:
            conn.search(base, search_filter, search_scope=_SCOPES[scope], attributes=attributes, size_limit=limit)
        except LDAPException as exc:
            raise SourceError(f"the LDAP search under {base!r} failed: {exc}; check auth.ldap") from None
        description = (conn.result or {}).get("description")
        if description not in ("success", "sizeLimitExceeded", "noSuchObject"):
            raise SourceError(f"the LDAP search {search_filter!r} under {base!r} failed ({description}); "
                              "check the base and filter in auth.ldap")
        return [_Entry(str(item["dn"]), dict(item.get("attributes", {})))
                for item in conn.response or [] if item.get("type") == "searchResEntry"]

    def _find_user(self, conn: Connection, username: str) -> _Entry:
        settings = self.settings
        search_filter = f"(&{settings.user_filter}({settings.uid_attribute}={escape_filter_chars(username)}))"
        found = self._search(conn, settings.user_base, search_filter, settings.user_scope,
                             [settings.uid_attribute, settings.email_attribute, settings.realname_attribute], limit=2)
        if not found:
            raise UnknownAccount(username)
        if len(found) > 1:
            raise SourceError(f"several directory entries match the login name {username!r} ({found[0].dn}, "
                              f"{found[1].dn}); make auth.ldap.user_filter or uid_attribute select one")
        return found[0]

    def _groups(self, conn: Connection, entry: _Entry, username: str) -> tuple[GroupRef, ...]:
        settings = self.settings
        if not settings.group_base:
            return ()
        member = username if settings.group_membership_attribute.lower() == "memberuid" else entry.dn
        search_filter = f"(&{settings.group_filter}({settings.group_membership_attribute}={escape_filter_chars(member)}))"
        found = self._search(conn, settings.group_base, search_filter, settings.group_scope,
                             [settings.group_name_attribute])
        refs = []
        for group in found:
            name = group.first(settings.group_name_attribute) or group.dn
            refs.append(GroupRef(LDAP, name, group.dn))
        return tuple(refs)

    def _account(self, conn: Connection, entry: _Entry, username: str) -> ExternalAccount:
        settings = self.settings
        groups = self._groups(conn, entry, username)
        sysadmin = None
        if self._admin_group is not None:
            sysadmin = any(_same_dn(ref.dn, self._admin_group) for ref in groups)
        return ExternalAccount(
            username=entry.first(settings.uid_attribute) or username,
            email=entry.first(settings.email_attribute),
            realname=entry.first(settings.realname_attribute),
            groups=groups, sysadmin=sysadmin,
            # Not remembered by the verification cache: every login re-reads the groups (rights
            # recomputed at each login), at the cost of a few directory round trips.
            holds_for=0,
        )

    def _service(self) -> Connection:
        conn = self._connect(self.settings.bind_dn, self.settings.bind_password, service=True)
        if conn is None:  # _connect raises for the service account; kept for the type checker
            raise SourceError("the directory refused the service account; check auth.ldap.bind_dn")
        return conn

    def _authenticate(self, username: str, password: str) -> ExternalAccount | None:
        service = self._service()
        try:
            entry = self._find_user(service, username)
            user_conn = self._connect(entry.dn, password, service=False)
            if user_conn is None:
                return None
            _close(user_conn)
            account = self._account(service, entry, entry.first(self.settings.uid_attribute) or username)
        finally:
            _close(service)
        log.info("ldap_login", username=account.username, dn=entry.dn, groups=len(account.groups))
        return account

    def _lookup(self, username: str) -> ExternalAccount:
        service = self._service()
        try:
            entry = self._find_user(service, username)
            return self._account(service, entry, entry.first(self.settings.uid_attribute) or username)
        finally:
            _close(service)

    def _search_groups(self, name: str | None, dn: str | None) -> list[GroupRef]:
        settings = self.settings
        service = self._service()
        try:
            if dn:
                found = self._search(service, dn, settings.group_filter, "base", [settings.group_name_attribute])
            else:
                search_filter = (f"(&{settings.group_filter}({settings.group_name_attribute}="
                                 f"{escape_filter_chars(name or '')}))")
                found = self._search(service, settings.group_base, search_filter, settings.group_scope,
                                     [settings.group_name_attribute], limit=100)
        finally:
            _close(service)
        return [GroupRef(LDAP, entry.first(settings.group_name_attribute) or entry.dn, entry.dn) for entry in found]

    def _group_exists(self, dn: str) -> bool:
        service = self._service()
        try:
            return bool(self._search(service, dn, self.settings.group_filter, "base", ["objectClass"]))
        finally:
            _close(service)


class _ContextTls(Tls):  # type: ignore[misc]  # ldap3 has no type information
    """ldap3's TLS with a standard :class:`ssl.SSLContext` that checks the certificate and the host name.

    ldap3 2.9 turns the context's host-name check off and checks with ``ssl.match_hostname``,
    deprecated since Python 3.7 and removed in 3.12; here Python's own check runs during the
    handshake (LDAPS, and StartTLS alike). ``context`` ``None``: no checking at all
    (``auth.ldap.verify_certificate: false``, test directories only).
    """

    def __init__(self, context: ssl.SSLContext | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED if context is not None else ssl.CERT_NONE)
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        # Without TCP_NODELAY each TLS login waited ~40 ms per connection on delayed ACKs
        # (Nagle's algorithm holding ldap3's small second write): 100 ms per login instead of ~10.
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.socket = self._context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host,
        )


def _close(conn: Connection) -> None:
    """Unbind, and close the socket even when the unbind cannot be sent (a broken TLS handshake)."""
    try:
        conn.unbind()
    except LDAPException:
        conn.strategy.close()


def _same_dn(dn: str | None, normalized: str) -> bool:
    if not dn:
        return False
    try:
        return normalize_dn(dn) == normalized
    except IdentityError:
        return False
