"""Jinja2 rendering of manifests, safe by construction.

Every `{{ expression }}` in a template is emitted as a YAML double-quoted
scalar or JSON flow collection (the environment's `finalize`), so no value --
a workflow string with newlines, `: `, quotes or `{{` included -- can change a
manifest's structure: it always comes back as data. Templates live in
shared/templates/; TEMPLATES_DIR points to an operator's own folder instead.

YAML is parsed once per *shape*, not once per object. A render first emits
each value as a numbered placeholder; that text depends only on the template
and the branches its `{% if %}`s took, not on the workflow. It is parsed once
and kept as JSON text; each render puts its own values' JSON where the
placeholders are and reads that back with `json.loads`. Parsing was three
quarters of rendering, and rendering a fifth of configure's CPU per admission.
A template that puts a value anywhere but as a whole scalar (inside a longer
string, a block scalar, a key) is rendered and parsed in full, as before, with
the same result.
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
_PLACEHOLDER_JSON = re.compile(r'"\\u0000c2d([0-9]+)\\u0000"')  # as json.dumps writes it
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
    """The object from the template's shape and this render's values; None when the
    shape does not parse or a value is not a whole scalar of it (render it in full)."""
    _capture.values = values = []
    try:
        text = template.render(**context)
    finally:
        _capture.values = None
    try:
        shape = _shape(text)
    except yaml.YAMLError:
        return None
    if shape is None:
        return None
    try:
        filled = _PLACEHOLDER_JSON.sub(lambda found: json.dumps(values[int(found.group(1))]),
                                       shape)
    except IndexError:  # the template's own text held a placeholder
        return None
    return json.loads(filled)


@lru_cache(maxsize=64)
def _shape(text: str) -> str | None:
    """The parsed shape as JSON text, where each value's JSON replaces its placeholder;
    None when a value is not a whole scalar or the shape is not plain JSON data."""
    obj = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    return json.dumps(obj) if _fillable(obj) else None


def _fillable(node: Any) -> bool:
    if isinstance(node, str):
        return not any(mark in node for mark in _STRAY) or _PLACEHOLDER.fullmatch(node) is not None
    if isinstance(node, dict):
        return all(isinstance(key, str) and not any(mark in key for mark in _STRAY)
                   and _fillable(item) for key, item in node.items())
    if isinstance(node, list):
        return all(_fillable(item) for item in node)
    return node is None or isinstance(node, bool | int | float)
