"""The statements of the hot ``/v2`` paths (issue 17, registry-scale metadata; docs/scale.md).

Counted, not timed: what a request sends to the database, captured from SQLAlchemy's cursor
events on every engine (SQLite has three). A push of a new tag into an existing repository
reads the repository once, without the project lookup and the ``INSERT … ON CONFLICT`` a new
repository needs, and records what the manifest references in one statement, however many
layers it has. A manifest GET by tag finds the tag by its unique key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from moorage.registry.manifest_store import _BY_TAG
from tests.integration.conftest import unique_name
from tests.integration.oci_client import push_image


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement sent while the test runs (one entry per execute or executemany)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_a_push_into_an_existing_repository_reads_it_once(
    client: httpx.AsyncClient, statements: list[str]
) -> None:
    name = unique_name("scale")
    layers = [b"layer one", b"layer two", b"layer three"]
    await push_image(client, name, "v1", layers)
    statements.clear()
    await push_image(client, name, "v2", layers, annotations={"second": "push"})
    inserts = [s for s in statements if s.startswith("INSERT INTO repositories")]
    assert inserts == []  # the first push created it; nothing re-inserts it
    references = [s for s in statements if s.startswith("INSERT INTO manifest_references")]
    assert len(references) == 1, references  # config + 3 layers in one statement
    manifest = await client.get(f"/v2/{name}/manifests/v2", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert manifest.status_code == 200
    assert manifest.json()["annotations"] == {"second": "push"}



def test_a_manifest_get_by_tag_finds_the_tag_by_its_repository() -> None:
    """The tag is looked up by its unique key (repository, name), then its manifest by id.

    Joined only through ``manifests``, nothing constrained ``tags.repository_id``: PostgreSQL read
    every manifest of the repository to find one tag (5,000 rows, 21 ms, in a repository of 10,000
    tags; docs/scale.md has both plans). The plan itself depends on the statistics, so this checks
    that the statement gives the planner the key.
    """
    sql = " ".join(str(_BY_TAG.compile(dialect=postgresql.dialect())).split())
    assert "JOIN tags ON tags.repository_id = repositories.id" in sql
    assert "JOIN manifests ON manifests.id = tags.manifest_id" in sql
