"""Jinja2 rendering of manifests, safe by construction.

Every `{{ expression }}` in a template is emitted as a YAML double-quoted
scalar or JSON flow collection (the environment's `finalize`), so no value --
a workflow string with newlines, `: `, quotes or `{{` included -- can change a
manifest's structure: it always comes back as data. Templates live in
shared/templates/; TEMPLATES_DIR points to an operator's own folder instead.

YAML is parsed once per *shape*, not once per object. A render first emits
each value as a numbered placeholder; that text depends only on the template
and the branches its `{% if %}`s took, not on the workflow. It is parsed once
and kept, and each render puts its own values where the placeholders are.
Parsing was three quarters of rendering, and rendering a fifth of configure's
CPU per admission. A template that puts a value anywhere but as a whole
scalar (inside a longer string, a block scalar, a key that is not a string)
is rendered and parsed in full, as before, with the same result.
"""

from __future__ import annotations

import json
import re
import threading
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

BUILTIN_DIR = Path(__file__).parent / "templates"
# libyaml's safe loader is ~4x faster than PyYAML's own. Same documents, same results.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TemplateError(RuntimeError):
    """A template is missing, refers to an undefined value or renders no valid YAML."""


# What YAML does not accept unescaped inside a double-quoted scalar: anything
# outside its printable set, and the two Unicode line breaks.
_YAML_UNSAFE = re.compile("[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def quote(value: Any) -> str:
    """`value` as JSON text that YAML reads back as exactly `value`."""
    text = json.dumps(value, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


# Placeholder number i is the double-quoted scalar "\0c2d<i>\0": it reads back as
# NUL c2d <i> NUL, which no template text holds; a workflow's values are never in
# the text the placeholders are in, so they cannot forge one.
_PLACEHOLDER = re.compile("\x00c2d([0-9]+)\x00")
_STRAY = ("\x00c2d", "\\0c2d")  # a placeholder read back, or left raw in another scalar
_capture = threading.local()  # this thread's render: the values behind its placeholders


def _finalize(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    values = getattr(_capture, "values", None)
    if values is None:
        return quote(value)
    values.append(value)
    return f'"\\0c2d{len(values) - 1}\\0"'


@cache
def _environment(templates_dir: str | None) -> jinja2.Environment:
    """The environment of an operator's folder, or of the built-in one."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir or BUILTIN_DIR),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
    )


def compile_all(templates_dir: str | None = None) -> None:
    """Compile every template of the folder now, not on a worker's first event (~10 ms)."""
    environment = _environment(templates_dir)
    for name in environment.list_templates():
        environment.get_template(name)


def render(name: str, context: dict[str, Any], templates_dir: str | None = None) -> dict:
    """Render template `name` with `context` into one Kubernetes object."""
    environment = _environment(templates_dir)
    try:
        template = environment.get_template(name)
        obj = _from_shape(template, context)
        if obj is None:
            obj = _parse(name, template.render(**context))
    except jinja2.TemplateNotFound:
        folder = templates_dir or BUILTIN_DIR
        raise TemplateError(f"template {name!r} not found in {folder}") from None
    except jinja2.UndefinedError as error:
        raise TemplateError(f"template {name!r}: {error.message}") from None
    except jinja2.TemplateError as error:  # syntax errors, e.g. in an operator's own folder
        raise TemplateError(f"template {name!r}: {error}") from None
    if not isinstance(obj, dict) or "kind" not in obj:
        raise TemplateError(f"template {name!r} did not render a Kubernetes object")
    return obj


def _parse(name: str, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise TemplateError(f"template {name!r} rendered invalid YAML: {error}") from None


def _from_shape(template: jinja2.Template, context: dict[str, Any]) -> Any:
    """The object from the template's parsed shape and this render's values; None when
    the shape does not parse or has a value where a placeholder cannot stand."""
    _capture.values = values = []
    try:
        shape = template.render(**context)
    finally:
        _capture.values = None
    try:
        return _fill(_shape(shape), values)
    except (_NotWhole, yaml.YAMLError):
        return None


@lru_cache(maxsize=64)
def _shape(text: str) -> Any:
    """The parsed shape; kept, so never changed: `_fill` builds new objects."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


class _NotWhole(Exception):
    """A value is not a whole scalar of the shape: render and parse in full."""


def _fill(node: Any, values: list[Any]) -> Any:
    if isinstance(node, str):
        if not any(mark in node for mark in _STRAY):
            return node
        found = _PLACEHOLDER.fullmatch(node)
        if found is None or int(found.group(1)) >= len(values):
            raise _NotWhole
        return _as_read(values[int(found.group(1))])
    if isinstance(node, dict):
        filled = {}
        for key, item in node.items():
            key = _fill(key, values)
            if isinstance(key, dict | list):
                raise _NotWhole  # unhashable: the full parse reports it
            filled[key] = _fill(item, values)
        return filled
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    return node


def _as_read(value: Any) -> Any:
    """`value` as YAML reads back its quoted text: a fresh copy of any collection."""
    if isinstance(value, str | bool | int) or value is None:
        return value
    return json.loads(quote(value))
