"""The publish pod as a real process: local folder, S3 (moto server) and IPFS (Kubo RPC)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from multiformats import CID

from shared import settings as settings_module
from shared import storage
from tests.pods.conftest import run_pod, write_workflow

POD = "functions.publish.pod"
BIG_OUTPUT = 12 << 20  # above the 8 MiB multipart threshold: two parts


def make_volume(tmp: Path, outside: Path | None = None) -> Path:
    """A volume as the algorithm leaves it, with hostile links and a FIFO."""
    data = tmp / "data"
    for folder in ("outputs/sub/deeper", "logs", "adminlogs"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    (data / "outputs" / "result.txt").write_text("42\n")
    (data / "outputs" / "sub" / "résumé 1.csv").write_text("a,b\n")
    (data / "outputs" / "sub" / "deeper" / "model.bin").write_bytes(os.urandom(3000))
    (data / "outputs" / "inside-link").symlink_to(data / "outputs" / "result.txt")
    (data / "outputs" / "passwd").symlink_to("/etc/passwd")
    (data / "outputs" / "up").symlink_to(tmp)  # a folder link: not followed
    os.mkfifo(data / "outputs" / "pipe")
    (data / "logs" / "algorithm.log").write_text("algorithm says hi\n")
    (data / "adminlogs" / "configure.log").write_text("configure log\n")
    (data / "adminlogs" / "filter.log").write_text("filter log\n")
    return data


def publish(tmp: Path, env: dict, output: dict | None = None):
    write_workflow(tmp, [], {"rawcode": "print('algorithm')"}, output or {})
    return run_pod(POD, tmp, env)


def by_name(results: list[dict]) -> dict[str, dict]:
    return {entry["filename"]: entry for entry in results}


def local_settings(tmp: Path, **env: str) -> settings_module.Settings:
    return settings_module.load({"C2D_STORAGE_DIR": str(tmp / "storage"), **env})


def test_local_storage_publishes_everything_but_hostile_files(tmp_path):
    data = make_volume(tmp_path)
    run = publish(tmp_path, {})
    assert run.code == 0, run.stderr
    results = storage.read_results(json.dumps(run.message), local_settings(tmp_path))
    assert [entry["index"] for entry in results] == list(range(len(results)))
    entries = by_name(results)
    assert set(entries) == {"result.txt", "inside-link", "sub/résumé 1.csv",
                            "sub/deeper/model.bin", "algorithm.log", "configure.log",
                            "filter.log", "publish.log"}
    assert {entries[name]["type"] for name in ("algorithm.log", "configure.log", "filter.log",
                                               "publish.log")} == {
        "algorithmLog", "configurationLog", "filteringLog", "publishLog"}
    model = entries["sub/deeper/model.bin"]
    stored = Path(unquote(urlsplit(model["url"]).path))
    assert stored == tmp_path / "storage/wf-test/outputs/sub/deeper/model.bin"
    assert stored.read_bytes() == (data / "outputs/sub/deeper/model.bin").read_bytes()
    assert model["filesize"] == 3000
    assert (tmp_path / "storage/wf-test/logs/algorithm.log").read_text() == "algorithm says hi\n"
    publish_log = (tmp_path / "storage/wf-test/adminlogs/publish.log").read_text()
    assert "skipped outputs/passwd" in publish_log and "not a regular file" in publish_log
    assert not list((tmp_path / "storage").rglob("passwd"))
    manifest = json.loads((tmp_path / "storage/wf-test/results.json").read_text())
    assert manifest["results"] == results and run.message["manifest"].startswith("file://")


def test_publish_flags_skip_outputs_and_algorithm_log(tmp_path):
    make_volume(tmp_path)
    run = publish(tmp_path, {}, {"publishOutput": 0, "publishAlgorithmLog": False})
    assert run.code == 0, run.stderr
    assert {e["type"] for e in run.message["results"]} == {
        "configurationLog", "filteringLog", "publishLog"}


def test_many_results_go_through_the_manifest(tmp_path):
    data = make_volume(tmp_path)
    for number in range(80):
        (data / "outputs" / f"a-rather-long-output-file-name-{number:03}.json").write_text("{}")
    run = publish(tmp_path, {})
    assert run.code == 0, run.stderr
    assert "results" not in run.message and run.message["count"] == 88
    assert len(json.dumps(run.message)) < 4096
    results = storage.read_results(json.dumps(run.message), local_settings(tmp_path))
    assert len(results) == 88 and results[-1]["filename"] == "publish.log"


def test_read_results_errors_are_clear(tmp_path):
    settings = local_settings(tmp_path)
    with pytest.raises(storage.StorageError, match="not JSON"):
        storage.read_results("garbage", settings)
    missing = (tmp_path / "storage" / "gone" / "results.json").as_uri()
    with pytest.raises(storage.StorageError, match="cannot read the result manifest"):
        storage.read_results(json.dumps({"exitCode": 0, "manifest": missing}), settings)
    with pytest.raises(storage.StorageError, match="outside the local storage"):
        storage.read_results(json.dumps({"exitCode": 0, "manifest": "file:///etc/passwd"}),
                             settings)
    with pytest.raises(storage.StorageError, match="neither results nor manifest"):
        storage.read_results(json.dumps({"exitCode": 0}), settings)
    assert storage.read_results(json.dumps({"exitCode": 1, "error": "x"}), settings) == []


def test_bad_job_id_is_a_clear_failure(tmp_path):
    make_volume(tmp_path)
    run = publish(tmp_path, {"JOB_ID": "../escape"})
    assert run.code == 1 and "JOB_ID" in run.message["error"]
    assert not (tmp_path / "escape").exists()


def test_s3_with_multipart_and_separate_admin_bucket(tmp_path, s3):
    client, env = s3
    client.create_bucket(Bucket="results")
    client.create_bucket(Bucket="admin")
    data = make_volume(tmp_path)
    big = os.urandom(BIG_OUTPUT)
    (data / "outputs" / "big.bin").write_bytes(big)
    run = publish(tmp_path, {**env, "AWS_BUCKET_OUTPUT": "results",
                             "AWS_BUCKET_ADMINLOGS": "admin", "STORAGE_EXPIRY": "24"})
    assert run.code == 0, run.stderr
    entries = by_name(run.message["results"])
    head = client.head_object(Bucket="results", Key="wf-test/outputs/big.bin")
    assert head["ContentLength"] == BIG_OUTPUT and head["ETag"].strip('"').endswith("-2")
    body = client.get_object(Bucket="results", Key="wf-test/outputs/big.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
    assert client.get_object(Bucket="results", Key="wf-test/outputs/sub/résumé 1.csv")[
        "Body"].read() == b"a,b\n"
    admin_keys = {o["Key"] for o in client.list_objects_v2(Bucket="admin")["Contents"]}
    assert admin_keys == {"wf-test/adminlogs/configure.log", "wf-test/adminlogs/filter.log",
                          "wf-test/adminlogs/publish.log"}
    assert entries["configure.log"]["url"].endswith("/admin/wf-test/adminlogs/configure.log")
    settings = settings_module.load({**env, "AWS_BUCKET_OUTPUT": "results"})
    from_manifest = storage.read_results(json.dumps({"exitCode": 0,
                                                     "manifest": run.message["manifest"]}),
                                         settings)
    assert from_manifest == run.message["results"]
    visible = run.stderr + json.dumps(run.message)
    assert "testing" not in visible  # the secret key never shows


def test_s3_upload_failure_names_the_file(tmp_path, s3):
    _, env = s3
    make_volume(tmp_path)
    run = publish(tmp_path, {**env, "AWS_BUCKET_OUTPUT": "no-such-bucket"})
    assert run.code == 1
    assert "NoSuchBucket" in run.message["error"]
    assert "wf-test/outputs/" in run.message["error"]
    assert run.message["failed"] and run.message.get("results", []) == []


def test_delete_expired_local_and_s3(tmp_path, s3):
    client, env = s3
    now = datetime.now(UTC)
    local = local_settings(tmp_path, STORAGE_EXPIRY="2")
    backend = storage.LocalBackend(local.storage_dir)
    for job in ("old-job", "new-job"):
        backend.put_bytes(f"{job}/outputs/x", b"x")
        backend.put_bytes(f"{job}/results.json", storage.manifest_bytes(job, []))
    (tmp_path / "storage/foreign").mkdir()
    old = (now - timedelta(hours=3)).timestamp()
    os.utime(tmp_path / "storage/old-job/results.json", (old, old))
    assert storage.delete_expired(local, now) == ["old-job"]
    assert sorted(p.name for p in (tmp_path / "storage").iterdir()) == ["foreign", "new-job"]
    never = local_settings(tmp_path, STORAGE_EXPIRY="0")
    assert storage.delete_expired(never, now + timedelta(days=999)) == []

    client.create_bucket(Bucket="expiring")
    s3_settings = settings_module.load({**env, "AWS_BUCKET_OUTPUT": "expiring",
                                        "STORAGE_EXPIRY": "1"})
    bucket = storage.S3Backend("expiring", s3_settings)
    bucket.put_bytes("job-1/outputs/a", b"a")
    bucket.put_bytes("job-1/results.json", storage.manifest_bytes("job-1", []))
    bucket.put_bytes("not-ours/data", b"keep")
    assert storage.delete_expired(s3_settings, now) == []
    assert storage.delete_expired(s3_settings, now + timedelta(hours=2)) == ["job-1"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="expiring")["Contents"]}
    assert keys == {"not-ours/data"}


def check_cid(kubo, cid_text: str, content: bytes | None = None) -> None:
    """The CID is a real CIDv0 of the block the server stores, and its file is `content`."""
    cid = CID.decode(cid_text)
    assert cid.version == 0 and cid.codec.name == "dag-pb" and cid.hashfun.name == "sha2-256"
    block = kubo.store.blocks[cid_text]
    assert cid.raw_digest == hashlib.sha256(block).digest()
    if content is not None:
        assert kubo.store.read_file(cid_text) == content


def test_ipfs_kubo_rpc_with_prefix_headers_and_expiry(tmp_path, kubo):
    data = make_volume(tmp_path)
    chunked = os.urandom(600 * 1024)  # three 256 KiB chunks under one root
    (data / "outputs" / "chunked.bin").write_bytes(chunked)
    kubo.fail_next = 1  # the first add meets a busy node and is retried
    env = {"IPFS_OUTPUT": kubo.url, "IPFS_OUTPUT_PREFIX": "ipfs://", "IPFS_API_KEY": "key-1",
           "IPFS_API_CLIENT": "client-1", "IPFS_EXPIRY_TIME": "3600"}
    run = publish(tmp_path, env)
    assert run.code == 0, run.stderr
    entries = by_name(run.message["results"])
    url = entries["chunked.bin"]["url"]
    assert url.startswith("ipfs://") and url.endswith("/chunked.bin")
    directory = url.removeprefix("ipfs://").split("/")[0]
    check_cid(kubo, directory)
    file_cid = kubo.store.resolve(f"{directory}/chunked.bin")
    check_cid(kubo, file_cid, chunked)
    assert len(kubo.store.blocks) > 3
    adds = [call for call in kubo.calls if call["path"] == "/api/v0/add"]
    assert all(call["headers"]["X-API-KEY"] == "key-1" and call["headers"]["CLIENT-ID"] ==
               "client-1" for call in adds)
    assert adds[0]["params"] == {"wrap-with-directory": "true", "pin": "true",
                                 "expire-in": "3600s"}
    named = entries["sub/résumé 1.csv"]["url"]
    check_cid(kubo, kubo.store.resolve(named.removeprefix("ipfs://")), b"a,b\n")
    settings = settings_module.load(env)
    assert storage.read_results(json.dumps({"exitCode": 0, "manifest": run.message["manifest"]}),
                                settings) == run.message["results"]


def test_ipfs_builder_matches_kubo_cids():
    """Known CIDs of `ipfs add` (Kubo defaults) prove the test server builds real DAGs."""
    from tests.pods.kubo import DIRECTORY, BlockStore, cid_v0, pb_node, unixfs

    store = BlockStore()
    hello = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert str(store.add_file(b"hello world\n")[0]) == hello
    assert str(store.add_file(b"")[0]) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert str(cid_v0(pb_node([], unixfs(DIRECTORY)))) == (
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")


def test_ipfs_unreachable_fails_with_the_file_named(tmp_path, kubo):
    (tmp_path / "data" / "outputs").mkdir(parents=True)
    (tmp_path / "data" / "outputs" / "only.txt").write_text("1")
    kubo.fail_next = 3  # every try for the first file; publish.log and the manifest get through
    run = publish(tmp_path, {"IPFS_OUTPUT": kubo.url})
    assert run.code == 1 and "IPFS add of wf-test/outputs/only.txt" in run.message["error"]
    assert "HTTP 503" in run.message["error"] and run.message["failed"] == [
        "wf-test/outputs/only.txt"]
    assert [entry["type"] for entry in run.message["results"]] == ["publishLog"]
