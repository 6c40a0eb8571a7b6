"""Numbers from headers, queries and paths are ASCII digits only; ranges follow RFC 9110."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.api.oci.routes import _content_range
from moorage.errors import RegistryError
from moorage.numbers import INT64_MAX, parse_decimal
from moorage.registry.blobs import ByteRange, parse_range

# Characters Python's int() or str.isdigit() treat as (parts of) numbers although HTTP does not.
_TRICKY = "0123456789_+- \t\n١٢٣²³¹٠߀０１９𝟗.eE"


def _is_ascii_number(text: str) -> bool:
    return bool(text) and all("0" <= c <= "9" for c in text)


@settings(deadline=None)  # no timing assertions: a loaded CI machine must not fail these
@given(st.one_of(st.text(alphabet=_TRICKY, max_size=25), st.text(max_size=25), st.integers(0, 2**70).map(str)))
def test_accepts_exactly_ascii_digits_up_to_the_maximum(text: str) -> None:
    expected = int(text) if _is_ascii_number(text) and int(text) <= INT64_MAX else None
    try:
        value: int | None = parse_decimal(text)
    except ValueError:
        value = None
    assert value == expected


@settings(deadline=None)  # no timing assertions: a loaded CI machine must not fail these
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 5))
def test_maximum_is_inclusive_and_leading_zeros_are_fine(value: int, maximum: int, zeros: int) -> None:
    text = "0" * zeros + str(value)
    if value <= maximum:
        assert parse_decimal(text, maximum=maximum) == value
    else:
        with pytest.raises(ValueError):
            parse_decimal(text, maximum=maximum)


def test_what_int_accepts_but_http_does_not() -> None:
    for text in ("1_0", "+5", " 5", "5 ", "١٢", "²", "5.0", "", "-0", "0x10", "1e3", "9" * 5000):
        with pytest.raises(ValueError):
            parse_decimal(text)
    assert parse_decimal("000") == 0


def _model(header: str, size: int) -> ByteRange | None | str:
    """RFC 9110 §14 for one ``bytes=`` range, written out case by case (the reference for the property)."""
    unit, equals, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if not equals or "," in spec or size == 0:
        return "416"
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return "416"
    if first == "":
        if not _is_ascii_number(last) or int(last) == 0:
            return "416"
        return ByteRange(max(0, size - int(last)), size - 1)  # a longer suffix is the whole blob
    if not _is_ascii_number(first) or (last and not _is_ascii_number(last)):
        return "416"
    start, end = int(first), int(last) if last else size - 1
    if start >= size or end < start:
        return "416"
    return ByteRange(start, min(end, size - 1))


_RANGE_PART = st.one_of(st.integers(0, 40).map(str), st.text(alphabet=_TRICKY, max_size=4))


@settings(deadline=None)  # no timing assertions: a loaded CI machine must not fail these
@given(
    st.one_of(
        st.builds(lambda a, b: f"bytes={a}-{b}", _RANGE_PART, _RANGE_PART),
        st.builds(lambda a: f"bytes=-{a}", _RANGE_PART),
        st.builds(lambda a: f"bytes={a}-", _RANGE_PART),
        st.text(alphabet="bytes=-,0123456789 items", max_size=16),
    ),
    st.integers(0, 30),
)
def test_ranges_follow_the_rfc(header: str, size: int) -> None:
    expected = _model(header, size)
    try:
        got: ByteRange | None | str = parse_range(header, size)
    except RegistryError as error:
        assert error.code == "RANGE_INVALID" and error.status == 416
        assert error.headers["Content-Range"] == f"bytes */{size}"
        got = "416"
    assert got == expected
    if isinstance(got, ByteRange):
        assert 0 <= got.start <= got.end < size


def test_suffix_ranges_on_empty_and_short_blobs() -> None:
    with pytest.raises(RegistryError) as empty:
        parse_range("bytes=-5", 0)
    assert empty.value.status == 416 and empty.value.headers["Content-Range"] == "bytes */0"
    assert parse_range("bytes=-5", 3) == ByteRange(0, 2)
    assert parse_range("items=0-1", 10) is None  # RFC 9110 §14.2: an unknown unit is ignored
    with pytest.raises(RegistryError):
        parse_range("bytes=1_0-2_0", 100)


@settings(deadline=None)  # no timing assertions: a loaded CI machine must not fail these
@given(
    st.one_of(
        st.builds(lambda a, b: f"{a}-{b}", _RANGE_PART, _RANGE_PART),
        st.builds(lambda p, a, b, t: f"{p}{a}-{b}{t}", st.sampled_from(["", "bytes ", "bytes="]), _RANGE_PART,
                  _RANGE_PART, st.sampled_from(["", "/*", "/100", "/1_0", "/²"])),
        st.text(alphabet="bytes=-/*0123456789 _²", max_size=16),
    )
)
def test_chunk_content_range_takes_ascii_digits_only(header: str) -> None:
    """A chunk's ``Content-Range`` (``<start>-<end>``, Docker's form) and nothing int() would also read."""
    value = header.strip(" \t")
    for prefix in ("bytes ", "bytes="):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    positions, slash, total = value.partition("/")
    first, _, last = positions.partition("-")
    valid = (
        _is_ascii_number(first) and _is_ascii_number(last) and int(last) >= int(first)
        and max(int(first), int(last)) <= INT64_MAX
        and (not slash or total == "*" or (_is_ascii_number(total) and int(total) <= INT64_MAX))
    )
    if not header:
        assert _content_range(header) is None
    elif valid:
        assert _content_range(header) == (int(first), int(last))
    else:
        with pytest.raises(RegistryError) as error:
            _content_range(header)
        assert error.value.code == "RANGE_INVALID"
