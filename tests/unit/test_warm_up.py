"""A gunicorn worker warms its app up before its first request (shared.gunicorn_config)."""

from __future__ import annotations

import gc
import logging
from types import SimpleNamespace

import pytest
from kubernetes.client import ApiClient

from functions.configure import app as configure
from shared import gunicorn_config, templates
from shared.connection import Connection

from .helpers import load_settings


@pytest.fixture(autouse=True)
def unfrozen():
    """The hook freezes this process's objects: give them back to the collector after."""
    yield
    gc.unfreeze()


@pytest.fixture
def clients(monkeypatch) -> list:
    """The Kubernetes clients the app makes (none is reached in these tests)."""
    made: list = []
    monkeypatch.setattr("shared.app.connect",
                        lambda kubeconfig: made.append(1) or Connection.of_client(ApiClient()))
    return made


def test_the_hook_builds_the_stage_and_compiles_the_templates(tmp_path, monkeypatch, clients):
    compiled = []
    monkeypatch.setattr(templates, "compile_all", compiled.append)
    app = configure.build(config=load_settings({"TEMPLATES_DIR": str(tmp_path)}))
    gunicorn_config.post_worker_init(SimpleNamespace(wsgi=app))
    assert clients == [1] and compiled == [str(tmp_path)]
    app.config["c2d_stage"]()  # the first event finds the stage built
    assert clients == [1]


def test_a_failed_warm_up_is_logged_and_the_worker_still_starts(tmp_path, caplog, clients):
    (tmp_path / "broken.yaml").write_text("kind: X\n{% if %}\n")
    app = configure.build(config=load_settings({"TEMPLATES_DIR": str(tmp_path)}))
    with caplog.at_level(logging.WARNING):
        gunicorn_config.post_worker_init(SimpleNamespace(wsgi=app))
    assert "warm-up failed: Expected an expression" in caplog.text


def test_an_app_without_a_warm_up_is_left_alone():
    gunicorn_config.post_worker_init(SimpleNamespace(wsgi=SimpleNamespace(config={})))


def test_what_start_up_built_is_set_aside_from_full_collections(tmp_path, clients):
    app = configure.build(config=load_settings({"TEMPLATES_DIR": str(tmp_path)}))
    gc.unfreeze()
    gunicorn_config.post_worker_init(SimpleNamespace(wsgi=app))
    assert gc.get_freeze_count() > 10_000  # the imports' objects, the app's among them
    assert all(obj is not app for obj in gc.get_objects())  # frozen, out of every generation
