"""The one rule for numbers that arrive in headers, query parameters and paths: ASCII digits only.

Why: Python's ``int()`` also accepts ``1_0`` (underscores), ``+5``, `` 5 `` (whitespace) and
non-ASCII digits such as ``١٢`` (Arabic-Indic), and ``str.isdigit()`` is true for ``²``, which
``int()`` then refuses. HTTP's grammars (``Content-Length = 1*DIGIT``, the ``Range`` and
``Content-Range`` positions, RFC 9110) and our own query parameters mean ``DIGIT`` = ``0-9``. A
number that two parsers can read two ways (a proxy reads ``1_0`` as garbage, we read 10) is a
smuggling hazard, so every such number goes through :func:`parse_decimal`.

This module imports nothing from the registry: every layer (API, domain services) may use it.
"""

from __future__ import annotations

__all__ = ["INT64_MAX", "parse_decimal"]

#: The largest value a number may take: sizes and offsets are stored as 64-bit integers.
INT64_MAX = 2**63 - 1

_DIGITS = frozenset("0123456789")


def parse_decimal(text: str, *, maximum: int = INT64_MAX) -> int:
    """The value of ``text`` if it is one or more ASCII digits (``0-9``) worth at most ``maximum``.

    Leading zeros are allowed (``1*DIGIT``); signs, whitespace, underscores, non-ASCII digits and
    the empty string are not. Callers strip the optional whitespace their grammar allows first.

    Raises :class:`ValueError` (with a message that names the rule) otherwise.
    """
    if not text or not _DIGITS.issuperset(text):
        raise ValueError(f"{text[:40]!r} is not a number: use ASCII digits 0-9 only")
    # Leading zeros do not count against the length bound that keeps int() cheap.
    significant = text.lstrip("0")
    if len(significant) > len(str(maximum)):
        raise ValueError(f"{text[:40]!r} is larger than {maximum}")
    value = int(significant or "0")
    if value > maximum:
        raise ValueError(f"{text[:40]!r} is larger than {maximum}")
    return value
