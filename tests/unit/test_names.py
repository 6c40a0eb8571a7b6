"""Every name validator: full matches only, no control, invisible or whitespace character anywhere.

``re.match(r"…$")`` matched ``"proja\\n"`` and ``"admin\\n"`` (issue 10); these properties run
over every validator in :data:`moorage.registry.names.VALIDATORS`, so a new one is covered too.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.config import ConfigError, load_settings
from moorage.errors import RegistryError
from moorage.registry.digests import parse_digest
from moorage.registry.names import (
    VALIDATORS,
    InvalidNameError,
    check_group_name,
    ldap_filter_character,
    validate_name,
    validate_tag,
)
from moorage.storage.checked import check_path
from moorage.storage.driver import InvalidPathError

_PROJECT = r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,3}"
_TAG = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,40}"
_USER = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,40}"
_COMPONENT = r"[a-z0-9]{1,8}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}"


def _regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


#: Canonical good forms of each kind of name, generated from the documented grammar.
GOOD: dict[str, st.SearchStrategy[str]] = {
    "repository": _regex(rf"{_COMPONENT}(?:/{_COMPONENT}){{1,3}}"),
    "tag": _regex(_TAG),
    "project": _regex(_PROJECT),
    "username": _regex(_USER).filter(lambda name: "$" not in name),
    "robot": _regex(_PROJECT),
    "login": st.one_of(
        _regex(_USER), _regex(rf"robot\$(?:{_PROJECT}\+)?{_PROJECT}")
    ),
    "identifier": _regex(r"[\x21-\x7e]{1,40}"),
}
EXAMPLES = {
    "repository": ["library/ubuntu", "proja/team/app", "a.b/c_d/e__f", "x-y--z/0"],
    "tag": ["latest", "v1.2.3", "_x", "A" * 128],
    "project": ["proja", "my-team.v2", "a_b"],
    "username": ["admin", "alice@example.com", "Bob.Smith-2"],
    "robot": ["ci", "build-bot.1"],
    "login": ["admin", "robot$ci", "robot$proja+ci"],
    "identifier": ["moorage", "registry.example.com:5000", "moorage-prod"],
}
#: Characters no name may contain: every control, format and separator character, and whatever
#: Python calls whitespace (U+001C…U+001F, U+0085 included).
_WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
BAD_CHARACTERS = st.one_of(
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]),
    st.sampled_from(_WHITESPACE),
    st.sampled_from(["\n", "\r\n", "\u200b", "\u00a0", "\u2028", "\u202e", "\ufeff", "\u3000", "\x00"]),
)


def test_every_validator_has_good_forms() -> None:
    assert set(GOOD) == set(VALIDATORS) == set(EXAMPLES)


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
def test_examples_accepted(kind: str) -> None:
    for example in EXAMPLES[kind]:
        assert VALIDATORS[kind](example) == example


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
@given(data=st.data())
def test_canonical_forms_accepted(kind: str, data: st.DataObject) -> None:
    name = data.draw(GOOD[kind])
    assert VALIDATORS[kind](name) == name


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
@given(data=st.data())
def test_trailing_newline_rejected(kind: str, data: st.DataObject) -> None:
    name = data.draw(GOOD[kind])
    for suffix in ("\n", "\r\n", "\r", " ", "\t"):
        with pytest.raises(InvalidNameError):
            VALIDATORS[kind](name + suffix)


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
@given(data=st.data())
def test_control_and_whitespace_rejected_anywhere(kind: str, data: st.DataObject) -> None:
    name = data.draw(GOOD[kind])
    bad = data.draw(BAD_CHARACTERS)
    at = data.draw(st.integers(0, len(name)))
    tainted = name[:at] + bad + name[at:]
    with pytest.raises(InvalidNameError) as caught:
        VALIDATORS[kind](tainted)
    assert f"U+{ord(bad[0]):04X}" in caught.value.message  # the message names the character to remove


@given(st.text(min_size=1, max_size=30))
def test_any_accepted_string_is_free_of_unsafe_characters(text: str) -> None:
    for validator in VALIDATORS.values():
        try:
            validator(text)
        except InvalidNameError:
            continue
        assert text.isprintable() and not any(char.isspace() for char in text)


def test_oci_wrappers_and_neighbours_use_full_matches() -> None:
    """The OCI errors, digests and storage paths: the same trailing-newline hole, closed."""
    with pytest.raises(RegistryError) as name:
        validate_name("proja/app\n")
    assert name.value.code == "NAME_INVALID"
    with pytest.raises(RegistryError) as tag:
        validate_tag("latest\n")
    assert tag.value.code == "MANIFEST_INVALID"  # the OCI spec has no tag code
    with pytest.raises(RegistryError) as digest:
        parse_digest("sha256:" + "a" * 64 + "\n")
    assert digest.value.code == "DIGEST_INVALID"
    with pytest.raises(InvalidPathError):
        check_path("blobs/sha256/aa/data\n")


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("MOORAGE_AUTH__SERVICE", "moorage\u200b", "auth.service"),
        ("MOORAGE_AUTH__SERVICE", "moor age", "auth.service"),
        ("MOORAGE_REDIS__KEY_PREFIX", "moorage\u00a0", "redis.key_prefix"),
        ("MOORAGE_REDIS__SENTINEL__MASTER", "my\tmaster", "redis.sentinel.master"),
    ],
)
def test_config_identifiers_refused_naming_the_key(variable: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: value})
    assert str(caught.value).startswith(f"{key}: ")


@pytest.mark.parametrize("name", ["Domain Admins", "dev", "R&D team", "équipe-3"])
def test_group_names_allow_single_spaces_between_words(name: str) -> None:
    assert check_group_name(name) == name


@pytest.mark.parametrize("name", ["", " dev", "dev ", "a  b", "a\tb", "a\u200bb", "x" * 256])
def test_group_names_refuse_other_whitespace_and_invisible_characters(name: str) -> None:
    with pytest.raises(InvalidNameError):
        check_group_name(name)


@given(st.text(max_size=40))
def test_ldap_filter_characters_are_found_wherever_they_are(text: str) -> None:
    found = ldap_filter_character(text)
    special = [char for char in text if char in "*()\\\0"]
    assert found == (special[0] if special else None)
