"""The access-control seam between the HTTP layer and identity.

The OCI routes ask an :class:`AccessController` before every operation; it answers with
the :class:`Principal` or raises ``UNAUTHORIZED``/``DENIED``/``NAME_UNKNOWN`` with a message
that says which credential or permission was missing. :class:`OpenAccess` is the
embedded default with ``auth.mode: none`` (every client may push and pull).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import ColumnElement

__all__ = ["AccessController", "AccessRequest", "OpenAccess", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request. ``name`` is ``anonymous`` when no credentials were sent."""

    name: str
    kind: str = "anonymous"  # anonymous | user | robot | system
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """What the HTTP layer knows about a request, without HTTP types."""

    headers: Mapping[str, str]
    #: ``scheme://host[:port]`` as the client sees the registry, built on demand: only a challenge
    #: needs it, and building it on every request was ~5 % of a manifest GET (issue 17's profile).
    external_base: Callable[[], str]
    client: str
    #: The HTTP method: a refusal of a ``HEAD`` carries no body, so token mode answers it differently.
    method: str = "GET"

    @property
    def base_url(self) -> str:
        """The registry's external base URL (for ``WWW-Authenticate`` realms and messages)."""
        return self.external_base()


class AccessController(Protocol):
    async def authenticate(self, request: AccessRequest) -> Principal:
        """Identify the caller of ``GET /v2/`` (must raise ``UNAUTHORIZED`` with a challenge when required)."""
        ...

    async def authorize(self, request: AccessRequest, repository: str, actions: frozenset[str], *,
                        mount_from: str | None = None, mirrored: bool = False) -> Principal:
        """Allow ``actions`` (``pull``, ``push``, ``delete``) on ``repository`` or raise.

        ``mount_from``: a cross-repository mount from that repository is asked for too (token
        auth names it in the challenge, so a client that follows challenges can mount).
        ``mirrored``: the client knows ``repository`` by another name (registry-mirror mode, the
        proxy project prefix is not in its request), so a bearer token it holds names that other
        name: the caller's current rights on ``repository`` decide alone.
        """
        ...

    async def catalog_visibility(self, request: AccessRequest) -> ColumnElement[bool] | None:
        """The condition on ``repositories`` rows the caller may see in ``_catalog`` (``None``: all).

        A condition in the catalog query rather than a filter after it: a page with hidden
        repositories must still be full and carry its ``Link`` to the next one.
        """
        ...


class OpenAccess:
    """Everyone may do everything: the open registry of ``auth.mode: none``."""

    async def authenticate(self, request: AccessRequest) -> Principal:
        return Principal("anonymous")

    async def authorize(self, request: AccessRequest, repository: str, actions: frozenset[str], *,
                        mount_from: str | None = None, mirrored: bool = False) -> Principal:
        return Principal("anonymous")

    async def catalog_visibility(self, request: AccessRequest) -> ColumnElement[bool] | None:
        return None
