"""The rules every mutating domain-service method checks first, whatever entry point called it.

``/v2``, the REST API, the CLI and jobs all change registry content through the domain
services, so checking here (and nowhere above) makes read-only maintenance mode and
``storage.delete.enabled`` hold for every one of them, with one wording.
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage.errors import RegistryError

__all__ = ["ReadOnlyError", "WriteGuard"]


class ReadOnlyError(RegistryError):
    """A change refused because ``storage.maintenance.readonly.enabled`` is on."""

    def __init__(self) -> None:
        super().__init__(
            "UNSUPPORTED",
            "the registry is in read-only maintenance mode: pushes and deletes are refused "
            "until an operator sets storage.maintenance.readonly.enabled: false",
        )


@dataclass(frozen=True, slots=True)
class WriteGuard:
    """What a deployment allows to change.

    ``projects_required`` (``auth.mode: token``): a repository can only be created inside an
    existing project, inside the same transaction that checks it, so a push racing a project
    delete fails instead of leaving a repository that a new project of the same name would find.
    """

    read_only: bool = False
    delete_enabled: bool = True
    projects_required: bool = False

    def writable(self) -> None:
        """Raise :class:`ReadOnlyError` in maintenance mode."""
        if self.read_only:
            raise ReadOnlyError()

    def deletable(self) -> None:
        """:meth:`writable`, and ``UNSUPPORTED`` when deletes are turned off."""
        self.writable()
        if not self.delete_enabled:
            raise RegistryError(
                "UNSUPPORTED", "deletes are disabled on this registry; set storage.delete.enabled: true to allow them"
            )
