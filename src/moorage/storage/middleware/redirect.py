"""``storage.redirect.disable``: a wrapper that switches redirects off, whatever the driver can do."""

from __future__ import annotations

from typing import BinaryIO

from moorage.storage.driver import LocalFiles, StorageDriver

__all__ = ["NoRedirect"]


class NoRedirect:
    """Delegates everything to ``inner`` except :meth:`url_for`, which always answers ``None``.

    With redirects off the registry streams every blob itself: slower, but it works
    behind firewalls where clients cannot reach the object store.
    """

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.stat = inner.stat
        self.read = inner.read
        self.put = inner.put
        self.append = inner.append
        self.commit = inner.commit
        self.move = inner.move
        self.list = inner.list
        self.delete = inner.delete
        self.delete_many = inner.delete_many
        self.self_check = inner.self_check

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        return None

    async def open_local(self, path: str) -> BinaryIO | None:
        return await self.inner.open_local(path) if isinstance(self.inner, LocalFiles) else None

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
