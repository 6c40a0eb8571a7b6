"""The lease renewer tied to an upload's write (moorage.registry.upload_lease.hold), driven by events."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from moorage.registry.upload_lease import Activity, LeaseTiming, hold

FAST = LeaseTiming(seconds=1.0, renew_every=0.01)


class LeaseLost(Exception):
    pass


async def test_renews_while_the_work_is_busy_and_returns_its_result() -> None:
    renewed = asyncio.Event()

    async def renew() -> None:
        renewed.set()

    async def work() -> str:
        await renewed.wait()  # finishes only once a renewal happened while it was busy
        return "done"

    assert await hold(work(), renew, Activity(), FAST) == "done"


async def test_a_lost_lease_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def renew() -> None:
        raise LeaseLost

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LeaseLost):
        await hold(work(), renew, Activity(), FAST)
    assert cancelled.is_set()


async def test_work_and_renewal_failing_together_leave_no_unretrieved_error() -> None:
    """The work fails while a renewal is failing too: the renewal's error wins, the work's is retrieved."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        renewing, work_failed = asyncio.Event(), asyncio.Event()

        async def renew() -> None:
            renewing.set()
            await work_failed.wait()
            raise LeaseLost

        async def work() -> None:
            await renewing.wait()
            work_failed.set()
            raise ValueError("the work's own error")

        with pytest.raises(LeaseLost):
            await hold(work(), renew, Activity(), FAST)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


async def test_after_the_work_ended_the_session_a_failed_renewal_is_ignored() -> None:
    activity = Activity()
    renewing, finish = asyncio.Event(), asyncio.Event()

    async def renew() -> None:
        renewing.set()
        await finish.wait()
        raise LeaseLost  # the row is gone: the work deleted it

    async def work() -> str:
        await renewing.wait()
        activity.end()  # as UploadService does before it deletes the session row
        finish.set()
        await asyncio.sleep(0)
        return "linked"

    assert await hold(work(), renew, activity, FAST) == "linked"


def test_renewal_must_come_before_the_lease_ends() -> None:
    with pytest.raises(ValueError):
        LeaseTiming(seconds=1.0, renew_every=1.0)
