"""Jinja2 rendering of manifests, safe by construction.

Every `{{ expression }}` in a template is emitted as a YAML double-quoted
scalar or JSON flow collection (the environment's `finalize`), so no value --
a workflow string with newlines, `: `, quotes or `{{` included -- can change a
manifest's structure: it always comes back as data. Templates live in
shared/templates/; TEMPLATES_DIR points to an operator's own folder instead.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

BUILTIN_DIR = Path(__file__).parent / "templates"
# libyaml's safe loader is ~4x faster than PyYAML's own; parsing was 40 % of a
# busy configure function's CPU. Same documents, same results.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TemplateError(RuntimeError):
    """A template is missing, refers to an undefined value or renders no valid YAML."""


def _yaml_safe(char: str) -> bool:
    """Whether YAML accepts `char` unescaped inside a double-quoted scalar."""
    code = ord(char)
    printable = (0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
                 or code >= 0x10000)
    return printable and char not in "\u2028\u2029"


def quote(value: Any) -> str:
    """`value` as JSON text that YAML reads back as exactly `value`."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(c if _yaml_safe(c) else f"\\u{ord(c):04x}" for c in text)


def _finalize(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    return quote(value)


@cache
def _environment(folder: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
    )


def render(name: str, context: dict[str, Any], templates_dir: str | None = None) -> dict:
    """Render template `name` with `context` into one Kubernetes object."""
    environment = _environment(templates_dir or str(BUILTIN_DIR))
    try:
        text = environment.get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        folder = templates_dir or BUILTIN_DIR
        raise TemplateError(f"template {name!r} not found in {folder}") from None
    except jinja2.UndefinedError as error:
        raise TemplateError(f"template {name!r}: {error.message}") from None
    except jinja2.TemplateError as error:  # syntax errors, e.g. in an operator's own folder
        raise TemplateError(f"template {name!r}: {error}") from None
    try:
        obj = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise TemplateError(f"template {name!r} rendered invalid YAML: {error}") from None
    if not isinstance(obj, dict) or "kind" not in obj:
        raise TemplateError(f"template {name!r} did not render a Kubernetes object")
    return obj
