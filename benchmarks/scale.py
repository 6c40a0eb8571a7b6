"""Registry-scale metadata (issue 17): p50/p95/p99 of the hot ``/v2`` reads and a push on a large PostgreSQL.

1. Creates a throwaway PostgreSQL database (``--admin-url``), runs ``moorage db upgrade`` on it and
   generates the dataset straight into the real schema with ``INSERT … SELECT generate_series``:
   projects (100 repositories each, every tenth public) with their quota rows, repositories,
   manifests (real OCI image manifests whose digest is the SHA-256 of the stored payload), two tags
   per manifest (one repository holds ``--big-tags``), config and layer blobs, the payload blobs,
   ``repository_blobs``, ``manifest_references``, ``project_blobs`` and ``quotas.storage_used`` as
   pushes would have left them, so a real push works on top. No bytes are written to storage:
   every measured operation answers from the database (the push writes its own manifest).
2. Starts ``moorage serve`` (token mode, ``--workers``) on it, creates a user who is a developer
   in every 50th project, all private (so it sees the public tenth and those: 12 % of the catalog).
3. ``--explain`` (default on): runs every operation a few times with ``auto_explain`` on for this
   database only and copies the plans of the statements the code really ran (``EXPLAIN ANALYZE,
   BUFFERS`` as logged by PostgreSQL) to ``--explain-out``.
4. Measures each operation ``--samples`` times from ``--concurrency`` keep-alive connections and
   prints p50/p95/p99, the server's CPU per request (its process tree, from /proc) and the
   database backends' CPU per request.

The database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import ResultRow, row, write_rows
from tests.e2e.identity_helpers import ADMIN_PASSWORD, PASSWORD, basic, start_token_moorage
from tests.e2e.servers import RegistryProcess, moorage_command

ACCEPT = "application/vnd.oci.image.manifest.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PG_LOG = Path("/var/log/postgresql/postgresql-15-main.log")
TARGET_MS = 50.0
USER = "scaleuser"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--tags", type=int, default=1_000_000)
    parser.add_argument("--blobs", type=int, default=2_000_000)
    parser.add_argument("--big-tags", type=int, default=10_000, help="tags of the one large repository")
    parser.add_argument("--samples", type=int, default=1000, help="requests per operation")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    parser.add_argument("--database-url", help="measure a database generated before with the same sizes (--generate-only)")
    parser.add_argument("--generate-only", action="store_true",
                        help="generate and keep the database, measure nothing (run it under flock -s, then measure "
                             "it with --database-url under flock -x)")
    parser.add_argument("--no-explain", dest="explain", action="store_false")
    parser.add_argument("--explain-out", type=Path, default=Path("scale-plans.txt"))
    parser.add_argument("--pg-log", type=Path, default=PG_LOG, help="PostgreSQL's log (auto_explain writes there)")
    parser.add_argument("--src", type=Path, help="run the server from this src/ directory (PYTHONPATH), e.g. "
                        "`git archive <commit> src | tar -x -C /tmp/before` for a before/after comparison")
    parser.add_argument("--results-json")
    return parser.parse_args(argv)


# --- the dataset ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    repositories: int
    tags: int
    blobs: int
    big_tags: int

    @property
    def projects(self) -> int:
        return max(1, self.repositories // 100)

    @property
    def big_repository(self) -> int:
        """Id of the repository with ``big_tags`` tags (a third into the catalog)."""
        return max(1, self.repositories // 3)


def repository_name(repository_id: int, sizes: Sizes) -> str:
    project = (repository_id - 1) * sizes.projects // sizes.repositories + 1
    return f"proj{project:05d}/app{repository_id:06d}"


def tag_name(index: int) -> str:
    return f"v{index:06d}"


_FUNCTIONS = """
CREATE FUNCTION pg_temp.dg(text) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT 'sha256:' || encode(sha256(convert_to($1, 'UTF8')), 'hex') $$;
CREATE FUNCTION pg_temp.layer_size(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS
  $$ SELECT 10000 + ($1 * 7919) % 50000000 $$;
CREATE FUNCTION pg_temp.config_size(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS
  $$ SELECT 1000 + $1 % 9000 $$;
"""

# Repository i (1-based) belongs to project (i-1)*P/R + 1; the big one has big_tags tags, the others
# share the rest evenly. Manifest m (0-based, id m+1) is tagged twice: tags 2k and 2k+1 of its repository.
_PLAN = """
CREATE TEMP TABLE plan AS
WITH base AS (
  SELECT i AS id, (i - 1) * %(projects)s / %(repositories)s + 1 AS project_id,
         CASE WHEN i = %(big)s THEN %(big_tags)s::bigint
              ELSE %(per)s + CASE WHEN (i - (i > %(big)s)::int) <= %(rem)s THEN 1 ELSE 0 END END AS n_tags
  FROM generate_series(1, %(repositories)s) AS i
)
SELECT id, project_id, n_tags, (n_tags + 1) / 2 AS n_manifests,
       COALESCE(sum((n_tags + 1) / 2) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::bigint
         AS first_m
FROM base
"""


def _manifest_payload_sql() -> str:
    """SQL of manifest ``m``'s payload: an OCI image manifest of its config and two layers (from the pool)."""
    layer = (
        "'{\"mediaType\":\"" + OCI_LAYER + "\",\"digest\":\"' || pg_temp.dg('l' || ({i})) || "
        "'\",\"size\":' || pg_temp.layer_size({i}) || '}'"
    )
    return (
        "convert_to('{\"schemaVersion\":2,\"mediaType\":\"" + OCI_MANIFEST + "\",\"config\":{\"mediaType\":\""
        + OCI_CONFIG + "\",\"digest\":\"' || pg_temp.dg('c' || m) || '\",\"size\":' || pg_temp.config_size(m) "
        "|| '},\"layers\":[' || " + layer.replace("{i}", "(2 * m) %% %(layers)s") + " || ',' || "
        + layer.replace("{i}", "(2 * m + 1) %% %(layers)s") + " || ']}', 'UTF8')"
    )


def generate(url: str, sizes: Sizes) -> dict[str, float]:
    """Fill a freshly migrated database; returns seconds per step."""
    others = max(1, sizes.repositories - 1)
    rest = max(0, sizes.tags - sizes.big_tags)
    params: dict[str, int] = {
        "projects": sizes.projects, "repositories": sizes.repositories, "big": sizes.big_repository,
        "big_tags": sizes.big_tags, "per": rest // others, "rem": rest % others,
    }
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("SET work_mem = '64MB'")
        conn.execute(_FUNCTIONS)

        def step(name: str, statement: str) -> None:
            started = time.perf_counter()
            conn.execute(statement, params)  # type: ignore[arg-type]  # composed at run time, not user input
            timings[name] = time.perf_counter() - started
            print(f"  {name}: {timings[name]:.1f} s", flush=True)

        step("plan", _PLAN)
        manifests_total = int(conn.execute("SELECT sum(n_manifests) FROM plan").fetchone()[0])  # type: ignore[index]
        params["manifests"] = manifests_total
        params["layers"] = max(2, sizes.blobs - 2 * manifests_total)
        step("projects", """
            INSERT INTO projects (id, name, public, owner_id, created_at, updated_at)
            SELECT p, 'proj' || lpad(p::text, 5, '0'), p %% 10 = 1, NULL, now(), now()
            FROM generate_series(1, %(projects)s) AS p""")
        step("quotas", """
            INSERT INTO quotas (project_id, storage_limit, count_limit, storage_used, created_at, updated_at)
            SELECT id, -1, -1, 0, now(), now() FROM projects""")
        step("repositories", """
            INSERT INTO repositories (id, name, project_id, created_at)
            SELECT id, 'proj' || lpad(project_id::text, 5, '0') || '/app' || lpad(id::text, 6, '0'), project_id, now()
            FROM plan""")
        step("config and layer blobs", """
            INSERT INTO blobs (id, digest, size, created_at, state, state_at)
            SELECT m + 1, pg_temp.dg('c' || m), pg_temp.config_size(m), now(), 'active', now()
            FROM generate_series(0, %(manifests)s - 1) AS m
            UNION ALL
            SELECT %(manifests)s + l + 1, pg_temp.dg('l' || l), pg_temp.layer_size(l), now(), 'active', now()
            FROM generate_series(0, %(layers)s - 1) AS l""")
        step("manifests", """
            INSERT INTO manifests (id, repository_id, digest, media_type, artifact_type, size, payload, created_at)
            SELECT m + 1, repository_id, 'sha256:' || encode(sha256(payload), 'hex'), '""" + OCI_MANIFEST + "', '"
             + OCI_CONFIG + """', length(payload), payload, now()
            FROM (SELECT plan.id AS repository_id, plan.first_m + k AS m FROM plan,
                  generate_series(0, plan.n_manifests - 1) AS k) AS ms,
                 LATERAL (SELECT """ + _manifest_payload_sql() + """ AS payload) AS p""")
        step("manifest blobs", """
            INSERT INTO blobs (id, digest, size, created_at, state, state_at)
            SELECT %(manifests)s + %(layers)s + id, digest, size, now(), 'active', now() FROM manifests""")
        step("tags", """
            INSERT INTO tags (repository_id, name, manifest_id, updated_at)
            SELECT plan.id, 'v' || lpad(t::text, 6, '0'), plan.first_m + t / 2 + 1, now()
            FROM plan, generate_series(0, plan.n_tags - 1) AS t""")
        step("manifest_references", """
            INSERT INTO manifest_references (manifest_id, kind, digest, created_at)
            SELECT DISTINCT m + 1, 'blob', d, now() FROM generate_series(0, %(manifests)s - 1) AS m,
              LATERAL (VALUES (pg_temp.dg('c' || m)), (pg_temp.dg('l' || ((2 * m) %% %(layers)s))),
                              (pg_temp.dg('l' || ((2 * m + 1) %% %(layers)s)))) AS v(d)""")
        step("repository_blobs", """
            INSERT INTO repository_blobs (repository_id, blob_id, created_at)
            SELECT DISTINCT ms.repository_id, b, now() FROM manifests AS ms,
              LATERAL (VALUES (ms.id), (%(manifests)s + 1 + ((2 * (ms.id - 1)) %% %(layers)s)),
                              (%(manifests)s + 1 + ((2 * (ms.id - 1) + 1) %% %(layers)s)),
                              (%(manifests)s + %(layers)s + ms.id)) AS v(b)""")
        step("project_blobs", """
            INSERT INTO project_blobs (project_id, blob_id, size)
            SELECT DISTINCT r.project_id, rb.blob_id, b.size
            FROM repository_blobs AS rb JOIN repositories AS r ON r.id = rb.repository_id
            JOIN blobs AS b ON b.id = rb.blob_id""")
        step("quota usage", """
            UPDATE quotas SET storage_used = s.total
            FROM (SELECT project_id, sum(size) AS total FROM project_blobs GROUP BY project_id) AS s
            WHERE quotas.project_id = s.project_id""")
        for table in ("projects", "repositories", "blobs", "manifests", "tags"):
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({t}, 'id'), (SELECT max(id) FROM {i}))").format(
                    t=sql.Literal(table), i=sql.Identifier(table)
                )
            )
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        timings["vacuum analyze"] = time.perf_counter() - started
        print(f"  vacuum analyze: {timings['vacuum analyze']:.1f} s", flush=True)
    return timings


def counts(url: str) -> dict[str, int]:
    tables = ("projects", "repositories", "manifests", "tags", "blobs", "repository_blobs", "manifest_references",
              "project_blobs")
    with psycopg.connect(url) as conn:
        return {t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0])  # type: ignore[index]
                for t in tables}


@contextmanager
def database(admin_url: str, keep: bool, existing: str | None) -> Iterator[str]:
    """A new database (dropped afterwards unless ``keep``), or ``existing`` as it is."""
    if existing is not None:
        yield existing
        return
    name = f"moorage_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        if keep:
            print(f"kept database: {url}")
        else:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- a small HTTP/1.1 client (httpx costs the shared 2 cores more than the server's answer) --------


@dataclass
class Request:
    method: str
    path: str
    token: str
    body: bytes = b""
    content_type: str | None = None
    expect: int = 200


class Connection:
    """One keep-alive HTTP/1.1 connection; answers must carry ``Content-Length`` (Moorage's do)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: Request) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"{request.method} {request.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: {ACCEPT}\r\n"
                f"Authorization: Bearer {request.token}\r\nContent-Length: {len(request.body)}\r\n")
        if request.content_type:
            head += f"Content-Type: {request.content_type}\r\n"
        self.writer.write(head.encode() + b"\r\n" + request.body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        status = int(answer.split(b" ", 2)[1])
        length = 0
        for line in answer.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length and request.method != "HEAD" else b""
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


@dataclass
class Result:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_cpu_ms: float = 0.0
    db_cpu_ms: float = 0.0

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1)]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (from /proc)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def backend_cpu_seconds(admin_url: str, dbname: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to ``dbname`` (the server's pool)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        pids = [int(r[0]) for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    return sum(tree_cpu_seconds(pid) for pid in pids)


async def run_requests(host: str, port: int, requests: Sequence[Request], concurrency: int, result: Result,
                       record: bool = True) -> None:
    queue = list(reversed(requests))

    async def worker() -> None:
        connection = Connection(host, port)
        try:
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                status, body = await connection.send(request)
                elapsed = (time.perf_counter() - started) * 1000
                if record:
                    result.latencies_ms.append(elapsed)
                if status != request.expect and len(result.errors) < 5:
                    result.errors.append(f"{request.method} {request.path}: {status} {body[:200]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_pushes(host: str, port: int, pushes: Sequence[list[Request]], concurrency: int,
                     heads: Result, puts: Result) -> None:
    """Each push: the blob HEADs a client sends first, then the manifest PUT (each timed on its own)."""
    queue = list(reversed(pushes))

    async def worker() -> None:
        connection = Connection(host, port)
        try:
            while queue:
                for request in queue.pop():
                    started = time.perf_counter()
                    status, body = await connection.send(request)
                    target = puts if request.method == "PUT" else heads
                    target.latencies_ms.append((time.perf_counter() - started) * 1000)
                    if status != request.expect and len(target.errors) < 5:
                        target.errors.append(f"{request.method} {request.path}: {status} {body[:200]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# --- the workload ----------------------------------------------------------------------------------


class Tokens:
    """Bearer tokens from ``/service/token`` (one per group of scopes, reused: verification is cached)."""

    def __init__(self, reg: RegistryProcess) -> None:
        self.http = httpx.Client(base_url=reg.url, timeout=60)

    def get(self, username: str, password: str, scopes: list[str]) -> str:
        r = self.http.get("/service/token", params=[("service", "moorage"), *(("scope", s) for s in scopes)],
                          headers=basic(username, password))
        r.raise_for_status()
        return str(r.json()["token"])


@dataclass
class Sample:
    repository: str
    tag: str
    digest: str
    payload: bytes


def samples(url: str, sizes: Sizes, count: int, rng: random.Random) -> list[Sample]:
    """``count`` random tagged manifests (one per repository) with their payload, from the database."""
    ids = rng.sample(range(1, sizes.repositories + 1), min(count, sizes.repositories))
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (r.id) r.name, t.name, m.digest, m.payload FROM repositories r "
            "JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id "
            "WHERE r.id = ANY(%s) ORDER BY r.id, t.name DESC", (ids,)
        ).fetchall()
    found = [Sample(r[0], r[1], r[2], bytes(r[3])) for r in rows]
    rng.shuffle(found)
    return found


def new_manifest(sample: Sample, n: int) -> bytes:
    """A new manifest over the sample's existing config and layers (an annotation makes its digest new)."""
    body = json.loads(sample.payload)
    body["annotations"] = {"org.example.scale": f"push-{n}-{uuid.uuid4().hex[:8]}"}
    return json.dumps(body, separators=(",", ":")).encode()


def operations(sizes: Sizes, picks: list[Sample], admin: dict[str, str], user_catalog: str, admin_catalog: str,
               n: int, rng: random.Random) -> dict[str, list[Request]]:
    """Name → ``n`` requests of that operation."""
    middle = quote(repository_name(sizes.repositories // 2, sizes))
    big = repository_name(sizes.big_repository, sizes)
    big_middle = tag_name(sizes.big_tags // 2)

    def times(make: Request) -> list[Request]:
        return [make] * n

    def spread(paths: list[str], token_of: Sequence[str]) -> list[Request]:
        return [Request("GET", paths[i % len(paths)], token_of[i % len(token_of)]) for i in range(n)]

    def random_last() -> str:
        return quote(repository_name(rng.randint(1, sizes.repositories), sizes))

    ops: dict[str, list[Request]] = {}
    for who, token in (("admin", admin_catalog), ("user", user_catalog)):
        for size in (100, 1000):
            ops[f"catalog first page n={size} ({who})"] = times(Request("GET", f"/v2/_catalog?n={size}", token))
            ops[f"catalog middle page n={size} ({who})"] = times(
                Request("GET", f"/v2/_catalog?n={size}&last={middle}", token))
        ops[f"catalog random page n=100 ({who})"] = [
            Request("GET", f"/v2/_catalog?n=100&last={random_last()}", token) for _ in range(n)]
    big_token = admin[big]
    for size in (100, 1000):
        ops[f"tags/list {sizes.big_tags} tags, first page n={size}"] = times(
            Request("GET", f"/v2/{big}/tags/list?n={size}", big_token))
        ops[f"tags/list {sizes.big_tags} tags, middle page n={size}"] = times(
            Request("GET", f"/v2/{big}/tags/list?n={size}&last={big_middle}", big_token))
    ops["tags/list typical repository (random)"] = spread(
        [f"/v2/{p.repository}/tags/list" for p in picks], [admin[p.repository] for p in picks])
    ops["tags/list typical repository, last="] = spread(
        [f"/v2/{p.repository}/tags/list?n=2&last={tag_name(1)}" for p in picks], [admin[p.repository] for p in picks])
    ops["manifest GET by tag (random)"] = spread(
        [f"/v2/{p.repository}/manifests/{p.tag}" for p in picks], [admin[p.repository] for p in picks])
    ops[f"manifest GET by tag, {sizes.big_tags}-tag repository"] = [
        Request("GET", f"/v2/{big}/manifests/{tag_name(rng.randrange(sizes.big_tags))}", big_token) for _ in range(n)]
    ops["manifest GET by digest (random)"] = spread(
        [f"/v2/{p.repository}/manifests/{p.digest}" for p in picks], [admin[p.repository] for p in picks])
    return ops


def push_requests(picks: list[Sample], admin: dict[str, str], n: int) -> list[list[Request]]:
    pushes = []
    for i in range(n):
        pick = picks[i % len(picks)]
        token = admin[pick.repository]
        body = json.loads(pick.payload)
        heads = [Request("HEAD", f"/v2/{pick.repository}/blobs/{d['digest']}", token)
                 for d in [body["config"], *body["layers"]]]
        put = Request("PUT", f"/v2/{pick.repository}/manifests/scale-{i}", token, new_manifest(pick, i), OCI_MANIFEST,
                      expect=201)
        pushes.append([*heads, put])
    return pushes


# --- plans ---------------------------------------------------------------------------------------


def set_auto_explain(admin_url: str, dbname: str, on: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        ident = sql.Identifier(dbname)
        if on:
            for name, value in (("session_preload_libraries", "auto_explain"), ("auto_explain.log_min_duration", "0"),
                                ("auto_explain.log_analyze", "on"), ("auto_explain.log_buffers", "on"),
                                ("auto_explain.log_timing", "on")):
                conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(ident, sql.SQL(name), sql.Literal(value)))
        else:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(ident))


_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] (\S*)@(\S*) ")


def plans_from_log(log: Path, offset: int, dbname: str) -> list[str]:
    """The auto_explain entries of ``dbname`` written to the log after ``offset``."""
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    entries: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        match = _ENTRY.match(line)
        if match:
            current = [line] if match.group(2) == dbname and "plan:" in line else None
            if current is not None:
                entries.append("")
                entries[-1] = line
        elif current is not None and entries:
            entries[-1] += "\n" + line
    return entries


def explain(args: argparse.Namespace, url: str, dbname: str, sizes: Sizes, workdir: Path,
            ops: dict[str, list[Request]], pushes: list[list[Request]]) -> None:
    """Run each operation three times with auto_explain on and write the logged plans, grouped by operation."""
    if not os.access(args.pg_log, os.R_OK):
        print(f"no plans: PostgreSQL's log {args.pg_log} is not readable here (--pg-log, or --no-explain)")
        return
    set_auto_explain(args.admin_url, dbname, True)
    sections: list[str] = []
    reg = start_token_moorage(workdir, label="moorage-explain", database_url=url,
                              extra_env={**server_env(args), "MOORAGE_HTTP__WORKERS": "1"})
    port = int(reg.host.rsplit(":", 1)[1])
    try:
        for name, requests in [*ops.items(), ("push (blob HEADs, manifest PUT)", [r for p in pushes[-3:] for r in p])]:
            offset = args.pg_log.stat().st_size
            asyncio.run(run_requests("127.0.0.1", port, requests[-3:] if "push" not in name else requests, 1,
                                     Result(name)))
            time.sleep(0.3)
            entries = plans_from_log(args.pg_log, offset, dbname)
            sections.append(f"===== {name} ({len(entries)} statements)\n" + "\n\n".join(entries))
    finally:
        reg.stop()
        set_auto_explain(args.admin_url, dbname, False)
    args.explain_out.write_text("\n\n".join(sections) + "\n")
    print(f"plans of the statements run: {args.explain_out}")


# --- main ----------------------------------------------------------------------------------------


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = {"MOORAGE_HTTP__WORKERS": str(args.workers), "MOORAGE_LOG__ACCESS_LOG": "false"}
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    return env


def upgrade(url: str, workdir: Path) -> None:
    env = {**os.environ, "MOORAGE_DATABASE_URL": url, "MOORAGE_DATA_DIR": str(workdir / "migrate")}
    subprocess.run([*moorage_command(), "db", "upgrade"], check=True, env=env, cwd=workdir)


def setup_user(reg: RegistryProcess, sizes: Sizes) -> None:
    """A user who is a developer in every 50th project, all private (it also sees the public tenth)."""
    with httpx.Client(base_url=f"{reg.url}/api/v2.0", headers=basic("admin", ADMIN_PASSWORD), timeout=60) as api:
        r = api.post("/users", json={"username": USER, "password": PASSWORD})
        assert r.status_code in (201, 409), r.text
        for project in range(min(25, sizes.projects), sizes.projects + 1, 50):  # private ones (public: p % 10 == 1)
            r = api.post(f"/projects/proj{project:05d}/members", json={"role_id": 2, "member_user": {"username": USER}})
            assert r.status_code in (201, 409), r.text


def measure(args: argparse.Namespace, url: str, sizes: Sizes, workdir: Path) -> list[Result]:
    dbname = urlsplit(url).path.lstrip("/")
    rng = random.Random(17)
    reg = start_token_moorage(workdir, label="moorage", database_url=url, extra_env=server_env(args))
    try:
        setup_user(reg, sizes)
        picks = samples(url, sizes, 300, rng)
        big = repository_name(sizes.big_repository, sizes)
        tokens = Tokens(reg)
        admin: dict[str, str] = {}
        names = [big, *(p.repository for p in picks)]
        for start in range(0, len(names), 20):
            group = names[start:start + 20]
            token = tokens.get("admin", ADMIN_PASSWORD, [f"repository:{name}:pull,push" for name in group])
            admin.update(dict.fromkeys(group, token))
        admin_catalog = tokens.get("admin", ADMIN_PASSWORD, ["registry:catalog:*"])
        user_catalog = tokens.get(USER, PASSWORD, ["registry:catalog:*"])
        ops = operations(sizes, picks, admin, user_catalog, admin_catalog, args.samples, rng)
        pushes = push_requests(picks, admin, 2 * args.samples + 3)
        port = int(reg.host.rsplit(":", 1)[1])
        results: list[Result] = []
        for name, requests in ops.items():
            result = Result(name)
            asyncio.run(run_requests("127.0.0.1", port, requests[:50], args.concurrency, result, record=False))
            cpu0, db0 = tree_cpu_seconds(reg.process.pid), backend_cpu_seconds(args.admin_url, dbname)
            asyncio.run(run_requests("127.0.0.1", port, requests, args.concurrency, result))
            result.server_cpu_ms = (tree_cpu_seconds(reg.process.pid) - cpu0) * 1000 / len(requests)
            result.db_cpu_ms = (backend_cpu_seconds(args.admin_url, dbname) - db0) * 1000 / len(requests)
            results.append(result)
            print(format_row(result), flush=True)
        # One client pushing (the latency a push sees), then --concurrency clients at once (under load).
        for round_number, clients in enumerate((1, args.concurrency)):
            batch = pushes[round_number * args.samples : (round_number + 1) * args.samples]
            suffix = f", {clients} client{'s' if clients > 1 else ''}"
            heads = Result(f"blob HEAD (before a push{suffix})")
            puts = Result(f"manifest PUT new tag{suffix}")
            cpu0, db0 = tree_cpu_seconds(reg.process.pid), backend_cpu_seconds(args.admin_url, dbname)
            asyncio.run(run_pushes("127.0.0.1", port, batch, clients, heads, puts))
            per = (tree_cpu_seconds(reg.process.pid) - cpu0) * 1000 / len(batch)
            db_per = (backend_cpu_seconds(args.admin_url, dbname) - db0) * 1000 / len(batch)
            puts.server_cpu_ms, puts.db_cpu_ms = per, db_per  # the whole push (HEADs + PUT)
            for result in (heads, puts):
                results.append(result)
                print(format_row(result), flush=True)
    finally:
        reg.stop()
    if args.explain:
        explain(args, url, dbname, sizes, workdir, ops, pushes[2 * args.samples :])
    return results


def format_row(result: Result) -> str:
    errors = f"  ERRORS: {result.errors}" if result.errors else ""
    cpu = f"{result.server_cpu_ms:6.2f} {result.db_cpu_ms:6.2f}" if result.server_cpu_ms else "     -      -"
    return (f"{result.name:<46} {len(result.latencies_ms):>6} {result.pct(50):7.2f} {result.pct(95):7.2f} "
            f"{result.pct(99):7.2f} {cpu}{errors}")


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes(args.repositories, args.tags, args.blobs, min(args.big_tags, args.tags))
    print(f"load before: {load()}")
    with tempfile.TemporaryDirectory(prefix="moorage-scale-") as tmp, \
            database(args.admin_url, args.keep or args.generate_only, args.database_url) as fresh:
        workdir = Path(tmp)
        url = args.database_url or fresh
        if args.database_url is None:
            upgrade(url, workdir)
            print(f"generating {sizes} into {url}", flush=True)
            started = time.perf_counter()
            generate(url, sizes)
            total = time.perf_counter() - started
            print(f"generated in {total:.1f} s (load {load()}): {counts(url)}", flush=True)
            if args.generate_only:
                return 0
        else:
            total = 0.0
        print(f"{'operation':<46} {'n':>6} {'p50':>7} {'p95':>7} {'p99':>7} {'srvCPU':>6} {'dbCPU':>6}   (ms)")
        results = measure(args, url, sizes, workdir)
        print(f"load after: {load()}")
    rows: list[ResultRow] = []
    for result in results:
        for p in (50, 95, 99):
            rows.append(row("scale", f"{result.name} p{p}", "ms", round(result.pct(p), 2),
                            target=f"< {TARGET_MS:g} ms" if p == 99 else None, higher_is_better=False))
    if total:
        rows.append(row("scale", f"generate {sizes.repositories} repos/{sizes.tags} tags/{sizes.blobs} blobs", "s",
                        round(total, 1), higher_is_better=False))
    write_rows(args.results_json, rows)
    failed = [r.name for r in results if r.errors or r.pct(99) >= TARGET_MS]
    if failed:
        print(f"over the target or with errors: {failed}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
