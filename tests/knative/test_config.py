"""c2d-config and c2d-secrets: every setting present once, no secret in the ConfigMap,
the documented defaults the ones shared/settings.py applies, and every shipped
configuration accepted by the real settings parser."""

from __future__ import annotations

import re

import pytest

from shared import settings

from .manifests import (
    KNATIVE,
    ORIGINAL,
    OVERLAYS,
    SECRET_KEYS,
    kubectl,
    kustomize,
    load_yaml,
)

CONFIG = load_yaml(KNATIVE / "config.yaml")[0]["data"]
VARIABLES = {variable: default for variable, default, _ in settings.SPEC.values()}

# Where the deployment deliberately differs from the code's default, and why.
DEPLOYMENT_VALUES = {
    "SERVICE_ACCOUNT": "c2d-jobs",  # the token-less, permission-less ServiceAccount of rbac.yaml
    "C2D_NAMESPACE": "c2d",  # kustomize copies the namespace here
    "POD_CONFIGURATION_CONTAINER": "c2d",  # kustomize copies the functions' image here
    "POD_PUBLISH_CONTAINER": "c2d",
}
# Values that must never sit in a ConfigMap, whatever the key is called.
SECRET_LOOKING = [
    re.compile(r"^(0x)?[0-9a-fA-F]{64}$"),  # an Ethereum private key
    re.compile(r"AKIA[0-9A-Z]{16}"),  # an AWS access key id
    re.compile(r"-----BEGIN"),  # PEM
]


def test_every_original_variable_is_configurable():
    assert ORIGINAL - (set(CONFIG) | SECRET_KEYS) == set()


def test_every_setting_is_in_exactly_one_place():
    assert set(VARIABLES) - SECRET_KEYS == set(CONFIG), "ConfigMap keys = non-secret settings"
    assert SECRET_KEYS <= set(VARIABLES)
    assert SECRET_KEYS & set(CONFIG) == set(), "a secret in the ConfigMap"


def test_secret_keys_are_the_ones_settings_redacts():
    redacted = settings.load({}).redacted()
    hidden = {variable for attribute, (variable, _, _) in settings.SPEC.items()
              if attribute in redacted and variable in SECRET_KEYS}
    assert hidden == SECRET_KEYS


def test_defaults_are_the_codes_except_where_documented():
    differing = {key: value for key, value in CONFIG.items() if VARIABLES[key] != value}
    assert differing == DEPLOYMENT_VALUES


def test_every_key_is_documented_in_config_yaml():
    text = (KNATIVE / "config.yaml").read_text()
    for key in CONFIG:
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
        above = text.split(line)[0].rstrip().splitlines()[-1].strip()
        assert "#" in line or above.startswith("#"), f"{key} has no comment"


def built_configs() -> list:
    return [KNATIVE] + sorted(p for p in OVERLAYS.iterdir() if p.is_dir())


@pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", built_configs(), ids=lambda p: p.name)
def test_shipped_configuration_is_accepted_by_settings(folder):
    built = kustomize(folder)
    [config] = [o for o in built if o["kind"] == "ConfigMap" and o["metadata"]["name"] ==
                "c2d-config"]
    data = config["data"]
    parsed = settings.load(data)
    assert parsed.namespace == data["C2D_NAMESPACE"]
    assert parsed.service_account == "c2d-jobs"
    for key, value in data.items():
        assert key not in SECRET_KEYS
        for pattern in SECRET_LOOKING:
            assert not pattern.search(value), f"{folder.name}: {key} looks like a secret"


def test_a_bad_value_in_the_config_is_refused_naming_it():
    with pytest.raises(settings.SettingsError, match="maxJobs"):
        settings.load({**CONFIG, "maxJobs": "ten"})
