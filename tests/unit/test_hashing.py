"""The resumable SHA-256 agrees with hashlib however the input is split and the state moved."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.registry.hashing import OFFLOAD_BYTES, ResumableSha256, feed, state_size


@given(st.lists(st.binary(max_size=300), max_size=12))
def test_matches_hashlib_across_serialised_states(pieces: list[bytes]) -> None:
    state = ResumableSha256().state()
    for piece in pieces:
        hasher = ResumableSha256(state)  # as if each piece reached another node
        hasher.update(piece)
        state = hasher.state()
    assert ResumableSha256(state).hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_hexdigest_does_not_consume_the_state() -> None:
    hasher = ResumableSha256()
    hasher.update(b"abc")
    first = hasher.hexdigest()
    assert hasher.hexdigest() == first
    hasher.update(b"def")
    assert hasher.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_large_input_and_bad_state() -> None:
    data = bytes(range(256)) * 40_000
    hasher = ResumableSha256()
    hasher.update(data)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(hasher.state()) == state_size()
    with pytest.raises(ValueError):
        ResumableSha256(b"short")


class _ThreadProbe:
    """A real hasher that also notes which thread each update ran on."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()
        self.threads: list[int] = []

    def update(self, data: bytes, /) -> None:
        import threading

        self.threads.append(threading.get_ident())
        self.inner.update(data)


async def test_large_chunks_are_hashed_off_the_event_loop() -> None:
    import threading

    probe = _ThreadProbe()
    small, large = b"s" * (OFFLOAD_BYTES - 1), b"L" * OFFLOAD_BYTES
    await feed(probe, small)
    await feed(probe, large)
    loop_thread = threading.get_ident()
    assert probe.threads[0] == loop_thread  # cheaper inline than a thread hop (docs/architecture.md)
    assert probe.threads[1] != loop_thread
    assert probe.inner.hexdigest() == hashlib.sha256(small + large).hexdigest()
    resumable = ResumableSha256()
    for piece in (small, large, small):
        await feed(resumable, piece)
    assert resumable.hexdigest() == hashlib.sha256(small + large + small).hexdigest()
