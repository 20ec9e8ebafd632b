"""shared.settings: every variable of DESIGN section 7, its default, its type, its errors."""

from __future__ import annotations

import json

import pytest

from shared import settings as settings_module
from shared.settings import SettingsError

from .helpers import load_settings

# DESIGN section 7: every variable of the original engine, same name and meaning.
DESIGN_VARIABLES = [
    "nCPU", "cpuType", "nGPU", "gpuRam", "gpuType", "ramGB", "diskGB", "priceMinute",
    "description", "maxJobs", "maxJobDuration", "STORAGE_EXPIRY", "OPERATOR_PRIVATE_KEY",
    "IPFS_TYPE", "IPFS_OUTPUT", "IPFS_ADMINLOGS", "IPFS_OUTPUT_PREFIX", "IPFS_ADMINLOGS_PREFIX",
    "IPFS_EXPIRY_TIME", "IPFS_API_KEY", "IPFS_API_CLIENT", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_BUCKET_OUTPUT", "AWS_BUCKET_ADMINLOGS",
    "STORAGE_CLASS", "NOTIFY_START_URL", "NOTIFY_STOP_URL", "SERVICE_ACCOUNT", "NODE_SELECTOR",
    "PULL_SECRET", "PULL_POLICY", "FILTERING_CONTAINER", "LOG_CFG", "LOG_LEVEL",
    "DEBUG_NO_CLEANUP", "POD_CONFIGURATION_CONTAINER", "POD_PUBLISH_CONTAINER",
]

# The original operator-engine's defaults (operator_engine/constants.py and README).
ORIGINAL_DEFAULTS = {
    "n_cpu": 1.0, "cpu_type": "", "n_gpu": 0, "gpu_ram": 0.0, "gpu_type": "", "ram_gb": 1.0,
    "disk_gb": 1.0, "price_minute": 0.0, "description": "", "max_jobs": 10,
    "max_job_duration": 60, "storage_expiry": 0, "operator_private_key": None,
    "ipfs_type": "CLIENT", "ipfs_output": None, "ipfs_adminlogs": None,
    "ipfs_output_prefix": None, "ipfs_adminlogs_prefix": None, "ipfs_expiry_time": None,
    "ipfs_api_key": None, "ipfs_api_client": None, "aws_access_key_id": None,
    "aws_secret_access_key": None, "aws_region": None, "aws_bucket_output": None,
    "aws_bucket_adminlogs": None, "storage_class": "gp2", "notify_start_url": None,
    "notify_stop_url": None, "service_account": "default", "node_selector": None,
    "pull_secret": None, "pull_policy": "Always", "filtering_container": None, "log_cfg": None,
    "log_level": "DEBUG", "debug_no_cleanup": False,
}

# A well-known test key (eth-account documentation) and its address.
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def test_every_design_variable_is_read():
    read = {variable for variable, _, _ in settings_module.SPEC.values()}
    assert sorted(set(DESIGN_VARIABLES) - read) == []


@pytest.mark.parametrize("attribute, expected", sorted(ORIGINAL_DEFAULTS.items()))
def test_default_is_the_original_engines(attribute, expected):
    value = getattr(load_settings(), attribute)
    assert value == expected
    assert type(value) is type(expected)


def test_pod_containers_default_to_an_image():
    loaded = load_settings()
    for image in (loaded.pod_configuration_container, loaded.pod_publish_container):
        assert isinstance(image, str) and image.strip() and " " not in image


# (variable, raw value, attribute, parsed value): proves each variable lands where it belongs.
VALID = [
    ("nCPU", "2.5", "n_cpu", 2.5),
    ("cpuType", "AMD EPYC 7R13", "cpu_type", "AMD EPYC 7R13"),
    ("nGPU", "2", "n_gpu", 2),
    ("gpuRam", "16", "gpu_ram", 16.0),
    ("gpuType", "nvidia-a100", "gpu_type", "nvidia-a100"),
    ("ramGB", "0.5", "ram_gb", 0.5),
    ("diskGB", "20", "disk_gb", 20.0),
    ("priceMinute", "0.25", "price_minute", 0.25),
    ("description", "  a GPU box  ", "description", "  a GPU box  "),
    ("maxJobs", " 5 ", "max_jobs", 5),
    ("maxJobDuration", "3600", "max_job_duration", 3600),
    ("STORAGE_EXPIRY", "48", "storage_expiry", 48),
    ("OPERATOR_PRIVATE_KEY", KEY, "operator_private_key", KEY),
    ("OPERATOR_PRIVATE_KEY", KEY[2:], "operator_private_key", KEY),
    ("IPFS_TYPE", "cluster", "ipfs_type", "CLUSTER"),
    ("IPFS_OUTPUT", "http://ipfs.example.org:5001", "ipfs_output", "http://ipfs.example.org:5001"),
    ("IPFS_ADMINLOGS", "https://ipfs-admin.example.org:5001", "ipfs_adminlogs",
     "https://ipfs-admin.example.org:5001"),
    ("IPFS_OUTPUT_PREFIX", "ipfs://", "ipfs_output_prefix", "ipfs://"),
    ("IPFS_ADMINLOGS_PREFIX", "http://gw:8080/ipfs/", "ipfs_adminlogs_prefix",
     "http://gw:8080/ipfs/"),
    ("IPFS_EXPIRY_TIME", "3600", "ipfs_expiry_time", "3600"),
    ("IPFS_API_KEY", "k-1", "ipfs_api_key", "k-1"),
    ("IPFS_API_CLIENT", "c-1", "ipfs_api_client", "c-1"),
    ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE", "aws_access_key_id", "AKIAEXAMPLE"),
    ("AWS_SECRET_ACCESS_KEY", "wJalr/EXAMPLE", "aws_secret_access_key", "wJalr/EXAMPLE"),
    ("AWS_REGION", "eu-west-1", "aws_region", "eu-west-1"),
    ("AWS_BUCKET_OUTPUT", "c2d-out", "aws_bucket_output", "c2d-out"),
    ("AWS_BUCKET_ADMINLOGS", "c2d-admin", "aws_bucket_adminlogs", "c2d-admin"),
    ("STORAGE_CLASS", "standard", "storage_class", "standard"),
    ("NOTIFY_START_URL", "http://127.0.0.1:9000/start", "notify_start_url",
     "http://127.0.0.1:9000/start"),
    ("NOTIFY_STOP_URL", "https://ops.example.org/stop?x=1", "notify_stop_url",
     "https://ops.example.org/stop?x=1"),
    ("SERVICE_ACCOUNT", "c2d-pods", "service_account", "c2d-pods"),
    ("NODE_SELECTOR", "gpu-nodes", "node_selector", ("scope", "gpu-nodes")),
    ("NODE_SELECTOR", "kubernetes.io/arch=amd64", "node_selector", ("kubernetes.io/arch", "amd64")),
    ("NODE_SELECTOR", "pool.example.com/tier=c2d_pool.v1", "node_selector",
     ("pool.example.com/tier", "c2d_pool.v1")),
    ("PULL_SECRET", "regcred", "pull_secret", "regcred"),
    ("PULL_POLICY", "IfNotPresent", "pull_policy", "IfNotPresent"),
    ("PULL_POLICY", "Never", "pull_policy", "Never"),
    ("FILTERING_CONTAINER", "example/filter:1.0", "filtering_container", "example/filter:1.0"),
    ("LOG_CFG", "/etc/c2d/logging.yaml", "log_cfg", "/etc/c2d/logging.yaml"),
    ("LOG_LEVEL", "info", "log_level", "INFO"),
    ("DEBUG_NO_CLEANUP", "1", "debug_no_cleanup", True),
    ("POD_CONFIGURATION_CONTAINER", "example/c2d:2", "pod_configuration_container",
     "example/c2d:2"),
    ("POD_PUBLISH_CONTAINER", "example/c2d:3", "pod_publish_container", "example/c2d:3"),
]


@pytest.mark.parametrize("variable, raw, attribute, expected", VALID,
                         ids=[f"{v}={r}" for v, r, _, _ in VALID])
def test_variable_is_parsed_into_its_attribute(variable, raw, attribute, expected):
    loaded = load_settings({variable: raw})
    assert getattr(loaded, attribute) == expected
    assert type(getattr(loaded, attribute)) is type(expected)
    # and nothing else moved from its default
    defaults = load_settings()
    changed = [f for f in ORIGINAL_DEFAULTS if getattr(loaded, f) != getattr(defaults, f)]
    assert changed in ([], [attribute])


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "Yes", "on", "  on  "])
def test_flags_accept_true_words(raw):
    assert load_settings({"DEBUG_NO_CLEANUP": raw}).debug_no_cleanup is True
    assert load_settings({"ALGORITHM_ALLOW_NETWORK": raw}).algorithm_allow_network is True


@pytest.mark.parametrize("raw", ["", "0", "false", "False", "no", "off"])
def test_flags_accept_false_words(raw):
    assert load_settings({"DEBUG_NO_CLEANUP": raw}).debug_no_cleanup is False
    assert load_settings({"ALGORITHM_ALLOW_NETWORK": raw}).algorithm_allow_network is False


INVALID = [
    ("maxJobs", "abc"), ("maxJobs", "0"), ("maxJobs", "-1"), ("maxJobs", "1.5"),
    ("maxJobs", ""),
    ("maxJobDuration", "0"), ("maxJobDuration", "ten"),
    ("nGPU", "-1"), ("nGPU", "1.5"), ("nGPU", "two"),
    ("nCPU", "0"), ("nCPU", "-2"), ("nCPU", "lots"),
    ("nCPU", "nan"),
    ("ramGB", "inf"),
    ("diskGB", "NaN"),
    ("ramGB", "0"), ("diskGB", "1GB"), ("priceMinute", "-1"), ("gpuRam", "-0.5"),
    ("STORAGE_EXPIRY", "-1"), ("STORAGE_EXPIRY", "1h"),
    ("OPERATOR_PRIVATE_KEY", "0x1234"),
    ("OPERATOR_PRIVATE_KEY", "zz" * 32),
    ("OPERATOR_PRIVATE_KEY", "0x" + "a" * 63),
    ("OPERATOR_PRIVATE_KEY", "a" * 66),
    ("OPERATOR_PRIVATE_KEY", "0x" + "a" * 62 + "\n0"),
    ("NODE_SELECTOR", "bad value!"),
    ("NODE_SELECTOR", "a b"),
    ("NODE_SELECTOR", "x=y=z"),
    ("NODE_SELECTOR", "=v"),
    ("NODE_SELECTOR", "-lead=x"),
    ("NODE_SELECTOR", "scope=" + "v" * 64),
    ("NODE_SELECTOR", "scope=va;lue"),
    ("NODE_SELECTOR", "val/ue"),
    ("NODE_SELECTOR", "a\nb"),
    ("NODE_SELECTOR", "{{x}}"),
    ("PULL_POLICY", "always"), ("PULL_POLICY", "Sometimes"), ("PULL_POLICY", ""),
    ("DEBUG_NO_CLEANUP", "maybe"), ("DEBUG_NO_CLEANUP", "2"),
    ("ALGORITHM_ALLOW_NETWORK", "perhaps"),
    ("NOTIFY_START_URL", "ftp://example.org/start"),
    ("NOTIFY_START_URL", "localhost:8080/start"),
    ("NOTIFY_STOP_URL", "http://"),
    ("NOTIFY_STOP_URL", "file:///etc/passwd"),
    ("IPFS_OUTPUT", "ipfs.example.org:5001"),
    ("IPFS_ADMINLOGS", "not a url"),
    ("NOTIFY_START_URL", "http://example.org/a b"),
    ("NOTIFY_STOP_URL", "http://example.org/\r\nX-Injected: 1"),
    ("LOG_LEVEL", "verbose"), ("IPFS_TYPE", "server"),
    ("STORAGE_CLASS", "Bad_Class"), ("SERVICE_ACCOUNT", "UPPER"), ("SERVICE_ACCOUNT", "a" * 64),
    ("PULL_SECRET", "Bad Secret!"),
    ("POD_CONFIGURATION_CONTAINER", ""),
    ("POD_PUBLISH_CONTAINER", "bad image"),
    ("FILTERING_CONTAINER", "filter image\n"),
    ("C2D_NAMESPACE", "Not_Valid"), ("RESYNC_SCHEDULE", "* * *"),
    ("JOB_DEADLINE_SECONDS", "0"), ("NOTIFY_TIMEOUT_SECONDS", "0"),
]


@pytest.mark.parametrize("variable, raw", INVALID)
def test_invalid_value_is_one_error_naming_the_variable(variable, raw):
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: raw})
    assert caught.value.variable == variable
    assert f"{variable}=" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_error_names_the_bad_variable_among_good_ones():
    with pytest.raises(SettingsError) as caught:
        load_settings({"nCPU": "4", "maxJobs": "abc", "PULL_POLICY": "Never"})
    assert caught.value.variable == "maxJobs"
    assert "integer" in str(caught.value)


def test_operator_address_is_derived_from_the_key():
    assert load_settings({"OPERATOR_PRIVATE_KEY": KEY}).operator_address == KEY_ADDRESS
    assert load_settings({"OPERATOR_PRIVATE_KEY": KEY[2:]}).operator_address == KEY_ADDRESS
    assert load_settings().operator_address is None


def test_environment_name_defaults_to_the_namespace():
    assert load_settings({"C2D_NAMESPACE": "ocean-compute"}).environment_name == "ocean-compute"
    assert load_settings({"C2D_NAMESPACE": "ocean-compute",
                          "C2D_ENVIRONMENT_ID": "gpu-env"}).environment_name == "gpu-env"


SECRETS = {"OPERATOR_PRIVATE_KEY": KEY, "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-secret",
           "AWS_ACCESS_KEY_ID": "AKIA-secret-id", "IPFS_API_KEY": "ipfs-key-secret",
           "IPFS_API_CLIENT": "ipfs-client-secret"}


def test_redacted_hides_every_secret_and_keeps_the_rest():
    loaded = load_settings({**SECRETS, "AWS_REGION": "eu-west-1", "maxJobs": "3"})
    shown = loaded.redacted()
    text = json.dumps(shown, default=str)
    for value in SECRETS.values():
        assert value not in text
        assert value[2:] not in text
    assert shown["operator_private_key"] == "***"
    assert shown["aws_secret_access_key"] == "***"
    assert shown["aws_region"] == "eu-west-1"
    assert shown["max_jobs"] == 3
    # unset secrets stay visibly unset, so an operator can tell
    assert load_settings().redacted()["operator_private_key"] is None


def test_repr_does_not_show_secrets():
    text = repr(load_settings(SECRETS))
    for value in SECRETS.values():
        assert value not in text


def test_malformed_private_key_is_not_echoed():
    nearly = KEY + "0"
    with pytest.raises(SettingsError) as caught:
        load_settings({"OPERATOR_PRIVATE_KEY": nearly})
    assert KEY[2:] not in str(caught.value)


def test_get_parses_once(monkeypatch):
    settings_module.get.cache_clear()
    try:
        monkeypatch.setenv("maxJobs", "3")
        first = settings_module.get()
        monkeypatch.setenv("maxJobs", "4")
        assert settings_module.get() is first
        assert first.max_jobs == 3
    finally:
        settings_module.get.cache_clear()


def test_get_reads_the_process_environment(monkeypatch):
    settings_module.get.cache_clear()
    try:
        monkeypatch.setenv("maxJobs", "abc")
        with pytest.raises(SettingsError, match="maxJobs"):
            settings_module.get()
    finally:
        settings_module.get.cache_clear()


def test_settings_are_immutable():
    loaded = load_settings()
    with pytest.raises(AttributeError):
        loaded.max_jobs = 99  # type: ignore[misc]
