"""A quick yes-or-not-sure answer to "does this object satisfy its kind's schema?".

jsonschema walks the Kubernetes schemas generically: about 1 ms for each write of
a Pod or a Job, a third of the embedded API server's CPU while a batch of
workflows starts. Those schemas use only a few keywords (type, enum, properties,
additionalProperties, items, required, oneOf, $ref), so each kind's schema is
compiled here once into plain checks. A check answers True (valid) or False
(not sure): whatever it does not pass goes to jsonschema, which decides and
words the errors. It may be stricter than jsonschema, never looser; a keyword
it does not know makes it answer False.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_TYPES: dict[str, tuple[type, ...]] = {
    # Exact types, as json.loads makes them; bool is not an integer here.
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "object": (dict,), "array": (list,),
}
# Keywords that describe and do not constrain (format is an annotation in 2020-12).
_ANNOTATIONS = {"description", "format", "$schema", "$id", "title", "default", "readOnly"}
_OBJECT_KEYWORDS = {"properties", "additionalProperties", "required"}
_DEFINITIONS_REF = "#/$defs/"


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


class Compiler:
    """Compiles schemas whose `$ref`s point into one set of `$defs` definitions."""

    def __init__(self, definitions: dict[str, Any]):
        self.definitions = definitions
        self._refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return _always
        if not isinstance(schema, dict):
            return _never
        checks: list[Check] = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS or keyword in _OBJECT_KEYWORDS \
                    or keyword.startswith("x-kubernetes-"):
                continue
            if keyword == "type":
                checks.append(self._type(value))
            elif keyword == "enum":
                checks.append(self._enum(value))
            elif keyword == "items" and isinstance(value, dict):
                checks.append(self._items(self.compile(value)))
            elif keyword == "oneOf" and isinstance(value, list):
                checks.append(self._one_of([self.compile(s) for s in value]))
            elif keyword == "$ref" and isinstance(value, str):
                checks.append(self._ref(value))
            else:
                return _never
        if _OBJECT_KEYWORDS & schema.keys():
            checks.append(self._object(schema))
        return _all(checks)

    def _type(self, names: str | list[str]) -> Check:
        names = [names] if isinstance(names, str) else names
        if any(name not in _TYPES for name in names):
            return _never
        allowed = tuple({t for name in names for t in _TYPES[name]})
        return lambda value: type(value) in allowed

    @staticmethod
    def _enum(options: list[Any]) -> Check:
        allowed = [(type(option), option) for option in options]
        return lambda value: (type(value), value) in allowed

    @staticmethod
    def _items(check: Check) -> Check:
        return lambda value: type(value) is not list or all(check(item) for item in value)

    @staticmethod
    def _one_of(checks: list[Check]) -> Check:
        return lambda value: sum(1 for check in checks if check(value)) == 1

    def _ref(self, ref: str) -> Check:
        _, found, name = ref.partition(_DEFINITIONS_REF)
        if not found or name not in self.definitions:
            return _never
        if name not in self._refs:
            compiled: list[Check] = []
            # Recursive definitions refer to themselves before they are compiled.
            self._refs[name] = lambda value: compiled[0](value)
            compiled.append(self.compile(self.definitions[name]))
        return self._refs[name]

    def _object(self, schema: dict[str, Any]) -> Check:
        properties = {name: self.compile(s) for name, s in (schema.get("properties") or {}).items()}
        extra = schema.get("additionalProperties", True)
        other = None if extra is False else self.compile(extra)
        required = list(schema.get("required") or [])

        def check(value: Any) -> bool:
            if type(value) is not dict:
                return True
            for key, item in value.items():
                known = properties.get(key)
                if known is not None:
                    if not known(item):
                        return False
                elif other is None or not other(item):
                    return False
            return all(key in value for key in required)

        return check
