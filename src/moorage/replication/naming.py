"""Where a replicated repository lands: destination namespace and Harbor's flattening.

Harbor's ``dest_namespace`` and ``dest_namespace_replace_count``:

* no destination namespace: the repository keeps its name (``a/b/img`` → ``a/b/img``);
* ``replace_count`` 0 ("no flattening"): the namespace is put in front of the whole path
  (``a/b/img`` → ``ns/a/b/img``); N: the first N levels are replaced by the namespace
  (1: ``a/b/img`` → ``ns/b/img``); -1 ("flatten all levels"): only the last level is kept
  (``ns/img``). Replacing more levels than the path has keeps the last one.

The result is validated as a repository name (:func:`moorage.registry.names.check_repository`), so
a rewrite that would produce an invalid name fails the task with that message instead of
pushing somewhere unexpected.
"""

from __future__ import annotations

from moorage.registry.names import check_repository

__all__ = ["FLATTEN_ALL", "destination_name"]

#: ``dest_namespace_replace_count`` that keeps only the last path level.
FLATTEN_ALL = -1


def destination_name(source: str, namespace: str | None, replace_count: int = FLATTEN_ALL) -> str:
    """The destination repository of ``source`` under ``namespace`` with ``replace_count`` levels replaced.

    Raises :class:`moorage.registry.names.InvalidNameError` when the result is not a valid name.
    """
    if not namespace:
        return source
    levels = source.split("/")
    if replace_count < 0 or replace_count >= len(levels):
        kept = levels[-1:]
    else:
        kept = levels[replace_count:]
    name = "/".join([namespace.strip("/"), *kept])
    return check_repository(name)
