"""``moorage check``: verify a configuration against the live services before serving with it.

Each check returns a :class:`CheckResult` with what was tested, whether it passed, and, when
it failed, what to do. Checks never raise: a failing dependency is a result, not a crash.
Every driver adds its own checks (e.g. Swift's storage URL) through the driver Protocol's
``self_check()``; wrappers pass it through. :class:`CheckResult` is defined in
:mod:`moorage.storage.driver`, so drivers never import this module (storage never imports upward).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from moorage.auth.oidc.provider import OidcError, OidcProvider
from moorage.config import Settings
from moorage.storage import CheckResult, StorageDriver, StorageError
from moorage.storage.factory import build_driver

__all__ = ["CheckResult", "run_checks"]

#: Presigned URLs fail when the clocks of the node and the store differ by more than this.
MAX_CLOCK_SKEW = 60.0
_PROBE_BYTES = b"moorage storage probe\n" * 64


async def check_database(settings: Settings) -> list[CheckResult]:
    from moorage.db.migrate import current_heads, pending
    from moorage.db.session import is_sqlite, sync_url

    url = settings.database_url
    shown = url.split("@")[-1]
    database_file = sync_url(url).database if is_sqlite(url) else None
    if database_file and not Path(database_file).exists():
        return [
            CheckResult(
                "database reachable",
                False,
                f"{database_file} does not exist",
                "run 'moorage db upgrade' (or start 'moorage serve', which creates it), or fix data_dir/database.url",
            )
        ]
    try:
        heads = await asyncio.to_thread(current_heads, url)
        missing = await asyncio.to_thread(pending, url)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        cause = getattr(exc, "orig", None) or exc  # the driver's own message, without SQLAlchemy's link
        return [
            CheckResult(
                "database reachable",
                False,
                f"{shown}: {type(cause).__name__}: {' '.join(str(cause).split())}"[:400],
                "check database.url (MOORAGE_DATABASE_URL), that the server runs and accepts this user",
            )
        ]
    results = [CheckResult("database reachable", True, shown)]
    if missing:
        results.append(
            CheckResult(
                "database migrated",
                False,
                f"at {', '.join(sorted(heads)) or 'an empty schema'}; missing {', '.join(sorted(missing))}",
                "run 'moorage db upgrade' (serve does it by itself unless database.auto_migrate is false)",
            )
        )
    else:
        results.append(CheckResult("database migrated", True, ", ".join(sorted(heads))))
    return results


async def _step(name: str, action: Callable[[], Awaitable[Any]], fix: str) -> tuple[CheckResult, Any]:
    try:
        value = await action()
    except StorageError as exc:
        return CheckResult(name, False, str(exc)[:400], fix), None
    except Exception as exc:  # noqa: BLE001
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}"[:400], fix), None
    return CheckResult(name, True, "ok"), value


async def check_storage(settings: Settings, storage: StorageDriver) -> list[CheckResult]:
    """Write, stat, read, list, presign (GET and HEAD) and delete a probe key."""
    key = f"_moorage_check/{uuid.uuid4().hex}"
    fix = f"check the storage.{settings.storage.driver_name} settings and the credentials' permissions"
    results: list[CheckResult] = []

    async def read_back() -> bytes:
        return b"".join([chunk async for chunk in storage.read(key)])

    async def listed() -> list[str]:
        return [info.path async for info in storage.list("_moorage_check")]

    result, _ = await _step("storage write", lambda: storage.put(key, _PROBE_BYTES), fix)
    results.append(result)
    if not result.ok:
        return results
    result, info = await _step("storage stat", lambda: storage.stat(key), fix)
    if result.ok and info.size != len(_PROBE_BYTES):
        result = CheckResult("storage stat", False, f"size {info.size}, expected {len(_PROBE_BYTES)}", fix)
    results.append(result)
    result, data = await _step("storage read", read_back, fix)
    if result.ok and data != _PROBE_BYTES:
        result = CheckResult("storage read", False, "read back other bytes than were written", fix)
    results.append(result)
    result, keys = await _step("storage list", listed, fix)
    if result.ok and key not in keys:
        result = CheckResult("storage list", False, f"the probe key is missing from a listing of {len(keys)} keys", fix)
    results.append(result)
    results.extend(await check_redirects(settings, storage, key))
    result, _ = await _step("storage delete", lambda: storage.delete(key), fix)
    results.append(result)
    results.extend(await storage.self_check())
    return results


async def check_redirects(settings: Settings, storage: StorageDriver, key: str) -> list[CheckResult]:
    """A presigned GET and a presigned HEAD must both answer 200 (the RGW HEAD-vs-GET report)."""
    results: list[CheckResult] = []
    driver_settings = settings.storage.driver_settings
    skip = bool(getattr(driver_settings, "insecureskipverify", False) or getattr(driver_settings, "skipverify", False))
    # The same trust as the driver's own connections (outbound.ca_bundle plus the driver's cabundle).
    verify = settings.outbound.trust_store().verify(getattr(driver_settings, "cabundle", None), skip_verify=skip)
    async with httpx.AsyncClient(verify=verify, timeout=15) as http:
        for method in ("GET", "HEAD"):
            name = f"presigned {method}"
            try:
                url = await storage.url_for(key, method, 300)
            except StorageError as exc:
                results.append(CheckResult(name, False, str(exc)[:400], "check the redirect settings"))
                continue
            if url is None:
                reason = "redirects disabled" if settings.storage.redirect.disable else "driver streams blobs itself"
                results.append(CheckResult(name, True, f"not used ({reason})"))
                continue
            try:
                response = await http.request(method, url)
            except httpx.HTTPError as exc:
                results.append(
                    CheckResult(
                        name,
                        False,
                        f"{url.split('?')[0]} unreachable: {exc}",
                        "clients are redirected there: make it reachable from clients, or set "
                        "storage.redirect.disable: true",
                    )
                )
                continue
            if response.status_code == 200:
                results.append(CheckResult(name, True, "200"))
                if method == "HEAD":
                    results.append(_clock_skew(response))
            else:
                results.append(
                    CheckResult(
                        name,
                        False,
                        f"answered {response.status_code} {response.text[:200]}",
                        "the store rejects this signature (a URL signed for another method, or clock skew); "
                        "set storage.redirect.disable: true until it is fixed",
                    )
                )
    return results


def _clock_skew(response: httpx.Response) -> CheckResult:
    header = response.headers.get("date")
    if not header:
        return CheckResult("clock skew", True, "the store sent no Date header; not measured")
    try:
        skew = abs((parsedate_to_datetime(header) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return CheckResult("clock skew", True, f"unparseable Date header {header!r}; not measured")
    if skew > MAX_CLOCK_SKEW:
        return CheckResult(
            "clock skew",
            False,
            f"{skew:.0f} s between this node and the store",
            "synchronise clocks (NTP): signed URLs and tokens fail with this much skew",
        )
    return CheckResult("clock skew", True, f"{skew:.1f} s")


async def check_redis(settings: Settings) -> list[CheckResult]:
    if not settings.redis.url:
        return []
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        return [CheckResult("redis reachable", False, "redis-py is not installed", "pip install redis")]
    client = redis_asyncio.from_url(settings.redis.url, socket_timeout=5)
    try:
        started = time.perf_counter()
        await client.ping()
        return [CheckResult("redis reachable", True, f"{(time.perf_counter() - started) * 1000:.1f} ms")]
    except Exception as exc:  # noqa: BLE001
        return [
            CheckResult(
                "redis reachable",
                False,
                f"{type(exc).__name__}: {exc}"[:300],
                "check redis.url; Redis is optional: remove it to run without a cache",
            )
        ]
    finally:
        await client.aclose()


async def check_oidc(settings: Settings) -> list[CheckResult]:
    """The OpenID provider (``auth.oidc``): its discovery document (issuer as configured) and its JWKS."""
    oidc = settings.auth.oidc
    if settings.auth.mode != "token" or not oidc.enabled:
        return []
    provider = OidcProvider(oidc, settings.outbound.trust_store())
    try:
        meta = await provider.discovery()
        keys = await provider.signing_keys()
    except OidcError as exc:
        return [CheckResult("oidc provider", False, exc.reason[:400],
                            "check auth.oidc.issuer, the network to the provider and (private CA) auth.oidc.ca_bundle "
                            "or outbound.ca_bundle")]
    finally:
        await provider.aclose()
    if not keys:
        return [CheckResult("oidc provider", False, f"the JWKS at {meta['jwks_uri']} holds no signing key",
                            "check the provider's key configuration")]
    return [CheckResult("oidc provider", True, f"issuer {meta['issuer']}, {len(keys)} signing key(s): {', '.join(keys)}")]


async def run_checks(settings: Settings) -> list[CheckResult]:
    """Every check for ``settings``, in the order an operator would fix them."""
    results = await check_database(settings)
    results += await check_redis(settings)
    results += await check_oidc(settings)
    if settings.site is None:
        return results + await _check_one_storage(settings, "")
    # Multi-site: every site's storage, each named (docs/multi-site.md); this node's site first.
    for name in [settings.site, *sorted(n for n in settings.sites if n != settings.site)]:
        site_settings = settings.model_copy(update={"storage": settings.sites[name].storage})
        results += await _check_one_storage(site_settings, f"site {name}: ", f"sites.{name}.storage")
    return results


async def _check_one_storage(settings: Settings, label: str, section: str = "storage") -> list[CheckResult]:
    """:func:`check_storage` on ``settings.storage``, each finding's name prefixed with ``label``."""
    try:
        storage = build_driver(
            settings.storage.driver_name,
            settings.storage.driver_settings,
            settings.data_dir,
            redirect=not settings.storage.redirect.disable,
            trust=settings.outbound.trust_store(),
        )
    except Exception as exc:  # noqa: BLE001
        return [CheckResult(f"{label}storage driver", False, f"{type(exc).__name__}: {exc}"[:400],
                            f"fix the {section} settings")]
    try:
        found = await check_storage(settings, storage)
    finally:
        await storage.aclose()
    if not label:
        return found
    return [replace(r, name=label + r.name, fix=r.fix.replace("storage.", f"{section}.", 1) if r.fix else r.fix)
            for r in found]
