"""Harbor's doublestar patterns (``**``, ``*``, ``?``, ``[a-z]``, ``{a,b}``), compiled to anchored regexes.

Harbor's tag-immutability and retention selectors use the ``doublestar`` Go library: ``*``
matches within one path segment, ``**`` across ``/``, ``{a,b}`` either alternative (nestable),
``[...]`` a character class (``[!...]``/``[^...]`` negated), and ``\\`` escapes. A pattern
matches the whole name, never a part of it. Patterns are compiled when they are saved, so a
pattern that cannot compile is refused with the field named and nothing stored.
"""

from __future__ import annotations

import re

__all__ = ["PatternError", "compile_pattern", "full_match"]

#: Longest pattern accepted (the column size).
MAX_PATTERN = 255


class PatternError(ValueError):
    """A pattern that is empty, too long or not well formed; the message says where."""


def _class(pattern: str, start: int) -> tuple[str, int]:
    """The regex of the ``[...]`` class opening at ``start`` and the index after it."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    if negate:
        i += 1
    body = ""
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            body += re.escape(pattern[i + 1])
            i += 2
        else:
            body += ch if ch == "-" else re.escape(ch)
            i += 1
        first = False
    if i >= len(pattern):
        raise PatternError(f"'[' at position {start} is never closed with ']'")
    if not body:
        raise PatternError(f"empty character class at position {start}")
    try:
        re.compile(f"[{body}]")
    except re.error as exc:
        raise PatternError(f"bad character class at position {start}: {exc}") from None
    return f"[{'^' if negate else ''}{body}]", i + 1


def _translate(pattern: str) -> str:
    out: list[str] = []
    braces: list[int] = []  # positions of the open '{'
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                while i < len(pattern) and pattern[i] == "*":
                    i += 1
                if i < len(pattern) and pattern[i] == "/":  # "**/" also matches no folder at all
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            regex, i = _class(pattern, i)
            out.append(regex)
            continue
        elif ch == "{":
            braces.append(i)
            out.append("(?:")
        elif ch == "," and braces:
            out.append("|")
        elif ch == "}" and braces:
            braces.pop()
            out.append(")")
        elif ch == "}":
            raise PatternError(f"'}}' at position {i} closes no '{{'")
        elif ch == "\\":
            if i + 1 >= len(pattern):
                raise PatternError("the pattern ends with a lone '\\'")
            out.append(re.escape(pattern[i + 1]))
            i += 1
        else:
            out.append(re.escape(ch))
        i += 1
    if braces:
        raise PatternError(f"'{{' at position {braces[-1]} is never closed with '}}'")
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The anchored regex of a doublestar ``pattern``; :class:`PatternError` when it cannot compile."""
    if not pattern:
        raise PatternError("the pattern is empty; use '**' to match everything")
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"the pattern is longer than {MAX_PATTERN} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in pattern):
        raise PatternError("the pattern contains a control character")
    return re.compile(_translate(pattern), re.DOTALL)


def full_match(pattern: str, name: str) -> bool:
    """Whether ``name`` matches the whole of ``pattern`` (which must compile)."""
    return compile_pattern(pattern).fullmatch(name) is not None
