"""Replication filters and destination naming (Harbor's semantics, see docs/replication.md)."""

from __future__ import annotations

import pytest

from moorage.registry.names import InvalidNameError
from moorage.replication.filters import FilterError, compile_filters
from moorage.replication.naming import destination_name


def test_name_filter_matches_with_or_without_the_project() -> None:
    sel = compile_filters([{"type": "name", "value": "library/**"}])
    assert sel.repository("library/alpine") and sel.repository("library/a/b")
    assert not sel.repository("other/alpine")
    inside = compile_filters([{"type": "name", "value": "alpine"}])
    assert inside.repository("library/alpine") and not inside.repository("library/busybox")


def test_tag_filters_match_exclude_and_negate() -> None:
    sel = compile_filters([
        {"type": "tag", "value": "{v1.*,latest}"},
        {"type": "tag", "value": "v1.0-*", "decoration": "excludes"},
        {"type": "tag", "value": "!*-rc"},
    ])
    assert sel.tag("v1.2") and sel.tag("latest")
    assert not sel.tag("v1.0-beta") and not sel.tag("v1.3-rc") and not sel.tag("v2.0")
    assert sel.filters_tags
    assert not compile_filters([]).filters_tags and compile_filters(None).tag("anything")


def test_resource_filter_tells_images_from_artifacts() -> None:
    images = compile_filters([{"type": "resource", "value": "image"}])
    oci = "application/vnd.oci.image.manifest.v1+json"
    assert images.artifact(oci, "application/vnd.oci.image.config.v1+json", None)
    assert not images.artifact(oci, "application/vnd.cncf.helm.config.v1+json", None)
    assert not images.artifact(oci, "application/vnd.oci.empty.v1+json", "application/vnd.example.sbom")
    artifacts = compile_filters([{"type": "resource", "value": "artifact"}])
    assert artifacts.artifact(oci, "application/vnd.cncf.helm.config.v1+json", None)


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ([{"type": "label", "value": "x"}], "filters[0].type"),
        ([{"type": "name", "value": "a/{b"}], "filters[0].value"),
        ([{"type": "tag", "value": "v1"}, {"type": "tag", "value": "[z"}], "filters[1].value"),
        ([{"type": "tag", "value": 3}], "filters[0].value"),
        ([{"type": "tag", "value": "x", "decoration": "maybe"}], "filters[0].decoration"),
        ([{"type": "resource", "value": "chart"}], "filters[0].value"),
        (["name"], "filters[0]"),
    ],
)
def test_a_bad_filter_names_its_field(filters: list[object], field: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filters(filters)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "ns/a/b/img"), (1, "ns/b/img"), (2, "ns/img"), (-1, "ns/img"), (9, "ns/img")],
)
def test_destination_name_flattens_like_harbor(count: int, expected: str) -> None:
    assert destination_name("a/b/img", "ns", count) == expected


def test_destination_name_without_namespace_keeps_the_source() -> None:
    assert destination_name("a/b/img", None, 1) == "a/b/img"
    assert destination_name("a/b/img", "", -1) == "a/b/img"


def test_destination_name_refuses_an_invalid_result() -> None:
    with pytest.raises(InvalidNameError):
        destination_name("a/img", "Bad Namespace", 0)
