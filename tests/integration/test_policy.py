"""The policy's SQL conditions and its per-project decision agree, for every kind of caller (issue 10).

Before, the visibility rule was written three times (``/v2`` refusals, REST lookups, the project
listing) and the copies disagreed (robot creation ignored robot namespaces). Now listings use
:meth:`Policy.visible_projects` / :meth:`Policy.visible_repositories` and single lookups use
:meth:`Policy.rights`; this test checks that both answer the same for a grid of projects and callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from moorage.auth.identity import ANONYMOUS, Subject
from moorage.db.identity_tables import projects
from moorage.db.tables import repositories
from tests.integration.test_identity_helpers import PASSWORD, Idp, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def test_listing_conditions_agree_with_single_decisions(idp: Idp) -> None:
    identity = idp.services.identity
    assert identity is not None
    store, policy = identity.store, identity.policy
    admin = store.user_subject(await store.user_by_name("admin"))  # type: ignore[arg-type]
    tag = uid("pol")
    names = {kind: f"{tag}-{kind}" for kind in ("public", "private", "member", "guest", "robotns")}
    made = {kind: await store.create_project(name, kind == "public", admin) for kind, name in names.items()}
    user = await store.create_user(uid("u"), PASSWORD)
    await store.add_member(made["member"], user.username, "developer")
    await store.add_member(made["guest"], user.username, "limitedGuest")
    for project in made.values():
        await idp.services.manifests.put(f"{project.name}/app", "v1", _index(), _INDEX)
    robot, _ = await identity.robots.create(
        name=uid("bot"), level="project", project=made["robotns"], permissions={names["robotns"]: frozenset({"pull"})},
        description=None, duration_days=-1,
    )
    system_robot, _ = await identity.robots.create(
        name=uid("sysbot"), level="system", project=None, permissions={"*": frozenset({"pull"})},
        description=None, duration_days=-1,
    )
    outsider = store.user_subject(await store.create_user(uid("o"), PASSWORD))
    callers: dict[str, Subject] = {
        "anonymous": ANONYMOUS, "admin": admin, "member": store.user_subject(user), "outsider": outsider,
        "robot": identity.robots.subject(robot), "system robot": identity.robots.subject(system_robot),
    }
    expected_visible = {
        "anonymous": {"public"}, "admin": set(names), "member": {"public", "member", "guest"},
        "outsider": {"public"}, "robot": {"public", "robotns"}, "system robot": set(names),
    }
    for label, subject in callers.items():
        single = {kind for kind in names if (await policy.rights(subject, names[kind])).visible}
        assert single == expected_visible[label], label
        condition = policy.visible_projects(subject)
        query = select(projects.c.name).where(projects.c.name.startswith(tag + "-"))
        async with idp.services.db.read() as conn:
            listed = set((await conn.execute(query if condition is None else query.where(condition))).scalars())
        assert listed == {names[kind] for kind in single}, label
        pullable = {kind for kind in names if "pull" in (await policy.rights(subject, names[kind])).actions}
        condition = policy.visible_repositories(subject)
        query = select(repositories.c.name).where(repositories.c.name.startswith(tag + "-"))
        async with idp.services.db.read() as conn:
            catalog = set((await conn.execute(query if condition is None else query.where(condition))).scalars())
        assert catalog == {f"{names[kind]}/app" for kind in pullable}, label


_INDEX = "application/vnd.oci.image.index.v1+json"


def _index() -> bytes:
    return b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
