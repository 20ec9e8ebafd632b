"""Trigger filters: `spec.filter.attributes` and the `spec.filters` dialect.

A filter compiles, once at load, to a predicate over the event's attributes as
strings (`events.attribute_strings`). Semantics follow Knative Eventing 1.15+:
- `filter.attributes`: exact, case-sensitive, ANDed; `""` matches any value
  (even an absent attribute);
- `filters`: a list ANDed; each entry is exactly one of `exact`, `prefix`,
  `suffix` (every key must match; an absent attribute never matches), `all`,
  `any` (non-empty lists), `not` (one nested filter). `cesql` is refused at load.
- when both are set, `filters` wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Attributes = Mapping[str, str]
Predicate = Callable[[Attributes], bool]

DIALECT_KEYS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")


class FilterError(ValueError):
    """A Trigger filter that cannot be evaluated (the message names the field)."""


def match_all(_: Attributes) -> bool:
    return True


def compile_trigger_filter(spec: Mapping[str, Any], where: str = "spec") -> Predicate:
    """The predicate of a Trigger `spec` (its `filters`, else its `filter.attributes`)."""
    filters = spec.get("filters")
    if filters is not None:
        return compile_filters(filters, f"{where}.filters")
    filter_ = spec.get("filter") or {}
    if not isinstance(filter_, Mapping):
        raise FilterError(f"{where}.filter must be a mapping")
    return compile_attributes(filter_.get("attributes") or {}, f"{where}.filter.attributes")


def compile_attributes(attributes: Mapping[str, Any], where: str) -> Predicate:
    """`filter.attributes`: every non-empty value must equal the event's attribute."""
    if not isinstance(attributes, Mapping):
        raise FilterError(f"{where} must be a mapping of attribute name to string")
    wanted = {}
    for name, value in attributes.items():
        if not isinstance(value, str):
            raise FilterError(f"{where}.{name} must be a string, not {type(value).__name__}")
        if value != "":  # "" = any value
            wanted[str(name)] = value

    def predicate(event: Attributes) -> bool:
        return all(event.get(name) == value for name, value in wanted.items())

    return predicate


def compile_filters(filters: Any, where: str) -> Predicate:
    """`filters`: a list of expressions, all of which must be true (empty list: true)."""
    if not isinstance(filters, list):
        raise FilterError(f"{where} must be a list of filter expressions")
    predicates = [compile_expression(f, f"{where}[{i}]") for i, f in enumerate(filters)]
    return lambda event: all(p(event) for p in predicates)


def compile_expression(expression: Any, where: str) -> Predicate:
    """One `SubscriptionsAPIFilter`: exactly one dialect key."""
    if not isinstance(expression, Mapping):
        raise FilterError(f"{where} must be a mapping with one of {', '.join(DIALECT_KEYS)}")
    unknown = sorted(set(expression) - set(DIALECT_KEYS))
    if unknown:
        raise FilterError(f"{where}: unknown filter {unknown[0]!r} (allowed: {DIALECT_KEYS})")
    present = [k for k in DIALECT_KEYS if k in expression]
    if len(present) != 1:
        raise FilterError(f"{where} must have exactly one of {DIALECT_KEYS}, has {present}")
    key = present[0]
    value = expression[key]
    at = f"{where}.{key}"
    if key == "cesql":
        raise FilterError(f"{at}: CESQL filters are not supported by the embedded Broker")
    if key == "exact":
        return _string_test(value, at, lambda actual, wanted: actual == wanted)
    if key == "prefix":
        return _string_test(value, at, str.startswith)
    if key == "suffix":
        return _string_test(value, at, str.endswith)
    if key == "not":
        inner = compile_expression(value, at)
        return lambda event: not inner(event)
    if not isinstance(value, list) or not value:
        raise FilterError(f"{at} must be a non-empty list of filter expressions")
    inner = [compile_expression(v, f"{at}[{i}]") for i, v in enumerate(value)]
    if key == "all":
        return lambda event: all(p(event) for p in inner)
    return lambda event: any(p(event) for p in inner)


def _string_test(value: Any, where: str, test: Callable[[str, str], bool]) -> Predicate:
    """`exact`/`prefix`/`suffix`: every `name: value` pair must pass; names, values non-empty."""
    if not isinstance(value, Mapping) or not value:
        raise FilterError(f"{where} must be a non-empty mapping of attribute name to string")
    pairs = []
    for name, wanted in value.items():
        if not isinstance(name, str) or not name:
            raise FilterError(f"{where}: attribute names must be non-empty strings")
        if not isinstance(wanted, str) or not wanted:
            raise FilterError(f"{where}.{name} must be a non-empty string")
        pairs.append((name, wanted))

    def predicate(event: Attributes) -> bool:
        for name, wanted in pairs:
            actual = event.get(name)
            if actual is None or not test(actual, wanted):
                return False
        return True

    return predicate
