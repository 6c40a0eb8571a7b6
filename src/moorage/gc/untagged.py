"""Which untagged manifests of a repository GC may delete (``--delete-untagged``).

A manifest is *kept* when it is tagged, younger than the grace window (a push in progress may
tag it, or an index may name it, any moment), a child of a kept index, a referrer of a kept
subject (signatures and SBOMs are never tagged), or the subject of a kept referrer. Everything
else in the repository is unreachable and goes.

Deleting is one write transaction per repository: the unreachable set is computed, locked
(``FOR UPDATE SKIP LOCKED``: a manifest a writer holds right now is simply not taken), and
computed again with fresh statements in which every manifest *not* locked counts as kept.
Writers that tag, re-push, name as a child or refer to a manifest take a shared lock on it
(:func:`moorage.registry.gc_fence.lock_manifest`), so whatever they committed is seen by the second
computation, and whatever they are about to do waits for GC and then finds the manifest gone.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.session import Reader
from moorage.db.tables import manifest_references, manifests, tags

__all__ = ["delete_unreachable", "find_unreachable", "unreachable"]


@dataclass(frozen=True, slots=True)
class _Node:
    id: int
    digest: str
    subject: str | None
    young: bool
    tagged: bool


async def _graph(
    conn: Reader, repository_id: int, cutoff: datetime
) -> tuple[dict[int, _Node], dict[int, set[str]]]:
    tagged = exists().where(tags.c.manifest_id == manifests.c.id)
    rows = await conn.execute(
        select(
            manifests.c.id,
            manifests.c.digest,
            manifests.c.subject_digest,
            (manifests.c.created_at >= cutoff).label("young"),
            tagged.label("tagged"),
        ).where(manifests.c.repository_id == repository_id)
    )
    nodes = {
        row.id: _Node(row.id, row.digest, row.subject_digest, bool(row.young), bool(row.tagged))
        for row in rows
    }
    children: dict[int, set[str]] = {}
    refs = await conn.execute(
        select(manifest_references.c.manifest_id, manifest_references.c.digest)
        .select_from(manifest_references.join(manifests))
        .where(manifests.c.repository_id == repository_id, manifest_references.c.kind == "manifest")
    )
    for ref in refs:
        children.setdefault(ref.manifest_id, set()).add(ref.digest)
    return nodes, children


def unreachable(
    nodes: dict[int, _Node], children: dict[int, set[str]], pinned: AbstractSet[int] = frozenset()
) -> set[int]:
    """Ids of manifests no kept manifest leads to (``pinned`` ones count as kept)."""
    by_digest = {node.digest: node.id for node in nodes.values()}
    referrers: dict[str, list[int]] = {}
    for node in nodes.values():
        if node.subject is not None:
            referrers.setdefault(node.subject, []).append(node.id)
    stack = [node.id for node in nodes.values() if node.tagged or node.young or node.id in pinned]
    kept: set[int] = set()
    while stack:
        current = stack.pop()
        if current in kept:
            continue
        kept.add(current)
        node = nodes[current]
        stack.extend(by_digest[d] for d in children.get(current, ()) if d in by_digest)
        stack.extend(referrers.get(node.digest, ()))
        if node.subject is not None and node.subject in by_digest:
            stack.append(by_digest[node.subject])
    return set(nodes) - kept


async def find_unreachable(conn: Reader, repository_id: int, cutoff: datetime) -> dict[int, str]:
    """Id → digest of what a real run would delete in the repository now (``--dry-run``)."""
    nodes, children = await _graph(conn, repository_id, cutoff)
    return {node_id: nodes[node_id].digest for node_id in unreachable(nodes, children)}


async def delete_unreachable(conn: AsyncConnection, repository_id: int, cutoff: datetime) -> list[str]:
    """Delete the repository's unreachable manifests inside the caller's write transaction; their digests."""
    nodes, children = await _graph(conn, repository_id, cutoff)
    doomed = unreachable(nodes, children)
    if not doomed:
        return []
    locked = set(
        (
            await conn.execute(
                select(manifests.c.id)
                .where(manifests.c.id.in_(sorted(doomed)))
                .order_by(manifests.c.id)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    # Fresh statements (PostgreSQL READ COMMITTED) see every writer that committed before our locks.
    nodes, children = await _graph(conn, repository_id, cutoff)
    final = unreachable(nodes, children, pinned=set(nodes) - locked)
    if not final:
        return []
    digests = [nodes[node_id].digest for node_id in sorted(final)]
    await conn.execute(delete(manifests).where(manifests.c.id.in_(sorted(final))))
    return digests
