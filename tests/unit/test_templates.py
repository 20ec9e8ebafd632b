"""shared.templates: quoting that keeps values as data, StrictUndefined, TEMPLATES_DIR."""

from __future__ import annotations

import shutil
from pathlib import Path

import jinja2
import pytest
import yaml

from shared import manifests, templates
from shared.templates import TemplateError

from .helpers import HOSTILE, load_settings

STRUCTURED = [None, True, False, 0, -7, 3.5, "", [], {}, ["a", {"b": [1, None]}],
              {"key: x": "v\n", "nested": {"&a": "*a", "list": ["---", "{{ x }}"]}}]


@pytest.mark.parametrize("value", HOSTILE + STRUCTURED, ids=repr)
def test_quote_reads_back_as_the_same_value(value):
    text = templates.quote(value)
    assert "\n" not in text and "\u2028" not in text and "\u0085" not in text
    assert yaml.safe_load(text) == value
    assert yaml.safe_load(f"key: {text}\nother: 1\n") == {"key": value, "other": 1}


def test_quote_reads_back_every_character():
    """Every code point but the lone surrogates, in blocks, through the loader render uses."""
    for start in range(0, 0x110000, 0x1000):
        block = "".join(chr(c) for c in range(start, start + 0x1000) if not 0xD800 <= c <= 0xDFFF)
        if block:
            text = templates.quote(block)
            assert "\n" not in text and "\u2028" not in text and "\u2029" not in text
            assert yaml.load(f"v: {text}", Loader=templates._LOADER) == {"v": block}  # noqa: S506


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_value_in_a_template_stays_one_scalar(tmp_path, value):
    (tmp_path / "obj.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ name }}\n"
        "data:\n  a: {{ value }}\n  b: fixed\n")
    obj = templates.render("obj.yaml", {"name": "n", "value": value}, str(tmp_path))
    assert obj == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"},
                   "data": {"a": value, "b": "fixed"}}


def test_template_text_in_a_value_is_not_rendered(tmp_path):
    (tmp_path / "obj.yaml").write_text("kind: X\nvalue: {{ value }}\n")
    obj = templates.render("obj.yaml", {"value": "{{ secret }}{% include 'obj.yaml' %}",
                                        "secret": "leaked"}, str(tmp_path))
    assert obj["value"] == "{{ secret }}{% include 'obj.yaml' %}"


def test_undefined_variable_is_a_template_error(tmp_path):
    (tmp_path / "obj.yaml").write_text("kind: X\nvalue: {{ nowhere }}\n")
    with pytest.raises(TemplateError, match="nowhere"):
        templates.render("obj.yaml", {}, str(tmp_path))


def test_undefined_attribute_is_a_template_error(tmp_path):
    (tmp_path / "obj.yaml").write_text("kind: X\nvalue: {{ names.nope }}\n")
    with pytest.raises(TemplateError, match="nope"):
        templates.render("obj.yaml", {"names": {"job": "x"}}, str(tmp_path))


@pytest.mark.parametrize("text", ["{{ nowhere }}", "{{ names.nope }}"])
def test_undefined_value_never_renders_silently(tmp_path, text):
    (tmp_path / "obj.yaml").write_text(f"kind: X\nvalue: {text}\n")
    with pytest.raises(Exception):  # noqa: B017 - any error beats a silent empty value
        templates.render("obj.yaml", {"names": {"job": "x"}}, str(tmp_path))


def test_undefined_in_a_condition_is_a_template_error(tmp_path):
    (tmp_path / "obj.yaml").write_text("kind: X\n{% if missing %}a: 1{% endif %}\n")
    with pytest.raises(TemplateError):
        templates.render("obj.yaml", {}, str(tmp_path))


def test_missing_template_names_the_folder(tmp_path):
    with pytest.raises(TemplateError, match=str(tmp_path)):
        templates.render("job.yaml", {}, str(tmp_path))


@pytest.mark.parametrize("text, problem", [
    ("kind: A\n---\nkind: B\n", "invalid YAML"),
    ("kind: [unclosed\n", "invalid YAML"),
    ("- kind: A\n", "did not render a Kubernetes object"),
    ("just text\n", "did not render a Kubernetes object"),
    ("metadata: {}\n", "did not render a Kubernetes object"),
    ("", "did not render a Kubernetes object"),
])
def test_template_that_renders_no_single_object_is_refused(tmp_path, text, problem):
    (tmp_path / "obj.yaml").write_text(text)
    with pytest.raises(TemplateError, match=problem):
        templates.render("obj.yaml", {}, str(tmp_path))


def test_template_syntax_error_is_a_template_error(tmp_path):
    (tmp_path / "obj.yaml").write_text("kind: X\n{% if %}\n")
    with pytest.raises(TemplateError):
        templates.render("obj.yaml", {}, str(tmp_path))


def test_syntax_error_is_at_least_a_jinja_error(tmp_path):
    (tmp_path / "obj.yaml").write_text("kind: X\n{% if %}\n")
    with pytest.raises((TemplateError, jinja2.TemplateError)):
        templates.render("obj.yaml", {}, str(tmp_path))


def test_builtin_templates_are_used_by_default(workflow):
    assert templates.BUILTIN_DIR == Path(manifests.__file__).parent / "templates"
    assert manifests.configmap(workflow, load_settings())["kind"] == "ConfigMap"


def test_templates_dir_overrides_the_builtin_folder(tmp_path, workflow):
    folder = tmp_path / "mine"
    shutil.copytree(templates.BUILTIN_DIR, folder)
    original = (folder / "configmap.yaml").read_text()
    (folder / "configmap.yaml").write_text(original.replace(
        "  labels: {{ labels }}\n",
        "  labels: {{ labels }}\n  annotations:\n    example.org/owner: {{ name }}\n"))
    custom = manifests.configmap(workflow, load_settings({"TEMPLATES_DIR": str(folder)}))
    assert custom["metadata"]["annotations"] == {"example.org/owner": "wf-1"}
    builtin = manifests.configmap(workflow, load_settings())
    assert "annotations" not in builtin["metadata"]
    # the rest of the object is the same
    del custom["metadata"]["annotations"]
    assert custom == builtin


def test_incomplete_templates_dir_is_a_clear_error(tmp_path, workflow):
    (tmp_path / "configmap.yaml").write_text((templates.BUILTIN_DIR / "configmap.yaml")
                                             .read_text())
    settings = load_settings({"TEMPLATES_DIR": str(tmp_path)})
    assert manifests.configmap(workflow, settings)["kind"] == "ConfigMap"
    with pytest.raises(TemplateError, match="secret.yaml"):
        manifests.secret(workflow, settings)


def test_compile_all_leaves_nothing_to_compile_for_a_first_render(tmp_path, workflow,
                                                                   monkeypatch):
    folder = tmp_path / "fresh"  # a folder no other test has compiled
    shutil.copytree(templates.BUILTIN_DIR, folder)
    settings = load_settings({"TEMPLATES_DIR": str(folder),
                              "FILTERING_CONTAINER": "filter:1"})
    templates.compile_all(str(folder))
    compiled = []
    original = jinja2.Environment.compile

    def counting(self, *args, **kwargs):
        compiled.append(args[1] if len(args) > 1 else kwargs.get("name"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    for stage in ("configure", "algorithm", "filter", "publish"):
        manifests.for_stage({**workflow, "metadata": {**workflow["metadata"], "uid": "u"}},
                            settings, stage)
    assert compiled == []


def test_compile_all_reports_a_broken_template(tmp_path):
    (tmp_path / "broken.yaml").write_text("kind: X\n{% if %}\n")
    with pytest.raises(jinja2.TemplateSyntaxError):
        templates.compile_all(str(tmp_path))


# Where a template may put a value. Each must render exactly as rendering the quoted
# values and parsing the whole text does (`_full_parse`), or fail as that does.
PLACES = {
    "whole scalar": "kind: X\na: {{ v }}\nb: {{ v }}\n",
    "flow sequence": "kind: X\na: [{{ v }}, fixed]\n",
    "flow mapping": "kind: X\na: {k: {{ v }}}\n",
    "key": "kind: X\n{{ v }}: 1\n",
    "inside a plain scalar": "kind: X\na: pre-{{ v }}\n",
    "inside single quotes": "kind: X\na: '{{ v }}'\n",
    "block scalar": "kind: X\na: |\n  {{ v }}\n",
    "two in a row": "kind: X\na: {{ v }}{{ v }}\n",
    "comment": "kind: X\n# {{ v }}\na: 1\n",
    "condition": "kind: X\n{% if v %}a: {{ v }}{% else %}b: none{% endif %}\n",
    "beside a NUL string": 'kind: X\na: "\\0c2d7\\0"\nb: {{ v }}\n',
}
FORGED = ["\x00c2d0\x00", "\\0c2d0\\0", '"\\0c2d0\\0"', "\x00c2d99\x00"]


def _full_parse(folder: Path, name: str, context: dict) -> object:
    """What rendering was before shapes: the quoted values in the text, all parsed."""
    text = templates._environment(str(folder)).get_template(name).render(**context)
    try:
        return templates._parse(name, text)
    except TemplateError:
        return TemplateError


@pytest.mark.parametrize("place", PLACES)
def test_a_value_in_any_place_renders_as_a_full_parse_does(tmp_path, place):
    (tmp_path / "obj.yaml").write_text(PLACES[place])
    for value in HOSTILE + STRUCTURED + FORGED:
        expected = _full_parse(tmp_path, "obj.yaml", {"v": value})
        try:
            got = templates.render("obj.yaml", {"v": value}, str(tmp_path))
        except TemplateError:
            got = TemplateError
        assert got == expected, value


def test_builtin_templates_render_as_a_full_parse_does(workflow, monkeypatch):
    settings = load_settings({"FILTERING_CONTAINER": "filter:1"})
    for value in HOSTILE + FORGED:
        stage = {"index": 0, "input": [{"index": 0, "id": value, "url": value}],
                 "algorithm": {"id": value, "rawcode": value, "algocustomdata": {value: value},
                               "container": {"image": "python", "tag": "3.11",
                                             "entrypoint": f"python $ALGO {value}"}},
                 "output": {}}
        hostile = {**workflow, "metadata": {**workflow["metadata"], "uid": value},
                   "spec": {"secret": value, "metadata": {"stages": [stage]}}}
        for name in ("configure", "algorithm", "filter", "publish"):
            shaped = manifests.for_stage(hostile, settings, name)
            with monkeypatch.context() as full_parse_only:
                full_parse_only.setattr(templates, "_from_shape", lambda *args: None)
                assert manifests.for_stage(hostile, settings, name) == shaped, (value, name)


def test_a_shape_is_parsed_once(tmp_path, monkeypatch):
    (tmp_path / "obj.yaml").write_text(PLACES["whole scalar"])
    templates.render("obj.yaml", {"v": "first"}, str(tmp_path))
    parsed = []
    original = yaml.load
    monkeypatch.setattr(yaml, "load", lambda *a, **k: parsed.append(a) or original(*a, **k))
    assert templates.render("obj.yaml", {"v": "second"}, str(tmp_path))["a"] == "second"
    assert templates.render("obj.yaml", {"v": ["third"]}, str(tmp_path))["b"] == ["third"]
    assert parsed == []


def test_each_place_gets_its_own_copy_of_a_collection(tmp_path):
    (tmp_path / "obj.yaml").write_text(PLACES["whole scalar"])
    value = {"labels": ["x"]}
    obj = templates.render("obj.yaml", {"v": value}, str(tmp_path))
    obj["a"]["labels"].append("changed")
    assert obj["b"] == {"labels": ["x"]} and value == {"labels": ["x"]}
    again = templates.render("obj.yaml", {"v": value}, str(tmp_path))
    assert again["a"] == {"labels": ["x"]}
