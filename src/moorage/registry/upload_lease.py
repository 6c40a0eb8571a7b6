"""The write lease of an upload session, kept alive for as long as the request is working.

One request at a time may write to an upload: it claims a lease in the upload's row
(:class:`~moorage.registry.uploads.UploadService`) that expires unless renewed. Renewing only
when a chunk arrives from the client is not enough: a driver may hold the request for longer
than the lease without asking for a chunk (an S3 part of 5 MiB or more on a slow link, the
multipart completion, a server-side copy of a large blob when publishing), and another request
would then claim the upload and the working one would end in a 416. So a background renewer
runs beside the work, tied to it (:func:`hold`): it renews while the request is busy, and the
work is cancelled when the lease turns out to be lost.

It does not renew while the request only waits for its client: a client that stalls keeps the
upload for at most the lease, so its retry after a half-open connection is not locked out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Activity", "LeaseTiming", "hold"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """How long a claim lasts without renewal, and how often a working request renews it.

    ``renew_every`` must leave room for a renewal to land before the lease ends (a third of
    the lease by default). Tests shorten both to exercise expiry without waiting 15 s.
    """

    seconds: float = 15.0
    renew_every: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.seconds:
            raise ValueError(f"lease renewal every {self.renew_every} s must be shorter than the lease of {self.seconds} s")


class Activity:
    """Whether the request is waiting for its client right now, and when the lease was last renewed.

    The chunk source marks the time it starts waiting for the client and clears it when a chunk
    arrives (or the body ends); everything else (hashing, the driver's writes, publishing) is work.
    The work calls :meth:`end` before it deletes the session row (completed or discarded): from
    then on there is no lease left to renew.
    """

    __slots__ = ("ended", "renewed", "waiting_since")

    def __init__(self) -> None:
        self.waiting_since: float | None = None
        self.renewed = time.monotonic()
        self.ended = False

    def busy(self) -> bool:
        return self.waiting_since is None and not self.ended

    def end(self) -> None:
        self.ended = True


async def hold(work: Awaitable[T], renew: Callable[[], Awaitable[None]], activity: Activity, timing: LeaseTiming) -> T:
    """Run ``work`` while renewing the lease every ``timing.renew_every`` seconds it is busy.

    ``renew`` raises when the lease was lost (another request claimed the upload); then ``work``
    is cancelled, awaited, and that error propagates, so two requests never write at once.
    Cancelling the caller cancels ``work`` too.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=timing.renew_every)
            if done:
                return task.result()
            if activity.busy():
                try:
                    await renew()
                except Exception:
                    if activity.ended:  # the work deleted the session meanwhile: nothing to hold
                        continue
                    raise
                activity.renewed = time.monotonic()
    finally:
        # When we leave early, the work's own ending (its cancellation, or the error it raised
        # while a renewal was failing too) is superseded by what is already propagating; it is
        # still retrieved, so asyncio never logs it as "never retrieved".
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        elif not task.cancelled():
            task.exception()
