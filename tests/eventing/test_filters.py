"""Trigger filters: each operator of the `filters` dialect, `filter.attributes`, precedence."""

from __future__ import annotations

import pytest

from devstack.eventing.filters import FilterError, compile_trigger_filter

JOB_UPDATE = {
    "type": "dev.knative.apiserver.resource.update",
    "source": "https://127.0.0.1:6443",
    "subject": "/apis/batch/v1/namespaces/default/jobs/wf1-configure",
    "kind": "Job",
}


def matches(spec: dict, event: dict = JOB_UPDATE) -> bool:
    return compile_trigger_filter(spec)(event)


def test_attributes_are_exact_and_anded() -> None:
    spec = {"filter": {"attributes": {"type": JOB_UPDATE["type"], "kind": "Job"}}}
    assert matches(spec)
    assert not matches({"filter": {"attributes": {"type": JOB_UPDATE["type"], "kind": "job"}}})
    assert not matches({"filter": {"attributes": {"kind": "Job", "name": "x"}}})


def test_attributes_empty_value_matches_any_even_absent() -> None:
    assert matches({"filter": {"attributes": {"kind": "", "name": ""}}})


def test_no_filter_matches_everything() -> None:
    assert matches({})
    assert matches({"filter": {}})
    assert matches({"filters": []})


@pytest.mark.parametrize(
    "expression, expected",
    [
        ({"exact": {"kind": "Job"}}, True),
        ({"exact": {"kind": "Jo"}}, False),
        ({"exact": {"kind": "Job", "type": "other"}}, False),  # every key must match
        ({"exact": {"missing": "x"}}, False),
        ({"prefix": {"type": "dev.knative.apiserver."}}, True),
        ({"prefix": {"type": "com.oceanprotocol."}}, False),
        ({"suffix": {"subject": "-configure"}}, True),
        ({"suffix": {"subject": "-algorithm"}}, False),
        ({"suffix": {"missing": "x"}}, False),
        ({"all": [{"exact": {"kind": "Job"}}, {"suffix": {"subject": "-configure"}}]}, True),
        ({"all": [{"exact": {"kind": "Job"}}, {"suffix": {"subject": "-publish"}}]}, False),
        ({"any": [{"suffix": {"subject": "-publish"}}, {"suffix": {"subject": "-configure"}}]},
         True),
        ({"any": [{"suffix": {"subject": "-publish"}}, {"exact": {"kind": "Pod"}}]}, False),
        ({"not": {"exact": {"kind": "Job"}}}, False),
        ({"not": {"exact": {"kind": "Workflow"}}}, True),
        ({"not": {"not": {"prefix": {"subject": "/apis/batch/"}}}}, True),
    ],
)
def test_filters_operators(expression: dict, expected: bool) -> None:
    assert matches({"filters": [expression]}) is expected


def test_filters_list_is_anded() -> None:
    ok = {"exact": {"kind": "Job"}}
    bad = {"suffix": {"subject": "-filter"}}
    assert matches({"filters": [ok, ok]})
    assert not matches({"filters": [ok, bad]})


def test_filters_win_over_attributes() -> None:
    spec = {
        "filter": {"attributes": {"kind": "Workflow"}},  # would not match
        "filters": [{"exact": {"kind": "Job"}}],  # matches
    }
    assert matches(spec)
    spec["filters"] = [{"exact": {"kind": "Pod"}}]
    spec["filter"] = {"attributes": {"kind": "Job"}}
    assert not matches(spec)


@pytest.mark.parametrize(
    "filters, message",
    [
        ([{"cesql": "kind = 'Job'"}], "spec.filters[0].cesql: CESQL filters are not supported"),
        ([{"exact": {"kind": ""}}], "spec.filters[0].exact.kind must be a non-empty string"),
        ([{"prefix": {}}], "spec.filters[0].prefix must be a non-empty mapping"),
        ([{"all": []}], "spec.filters[0].all must be a non-empty list"),
        ([{"exact": {"a": "b"}, "suffix": {"a": "b"}}], "spec.filters[0] must have exactly one"),
        ([{"regex": {"a": "b"}}], "spec.filters[0]: unknown filter 'regex'"),
        ([{"not": {"any": [{"suffix": 3}]}}], "spec.filters[0].not.any[0].suffix must be"),
        ({"exact": {"a": "b"}}, "spec.filters must be a list"),
        (["exact"], "spec.filters[0] must be a mapping"),
    ],
)
def test_bad_filters_are_clear_errors(filters: object, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_trigger_filter({"filters": filters})
    assert message in str(caught.value)


def test_bad_attribute_value_is_clear_error() -> None:
    with pytest.raises(FilterError, match=r"spec.filter.attributes.kind must be a string"):
        compile_trigger_filter({"filter": {"attributes": {"kind": 3}}})
