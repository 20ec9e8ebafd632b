"""The configure pod as a real process against real loopback servers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.pods.conftest import (
    BIG,
    BIG_MARKS,
    OPERATOR,
    OPERATOR_KEY,
    ROOT,
    run_pod,
    write_workflow,
)

POD = "functions.configure.pod"
DID_A = "did:op:" + "a" * 64
DID_B = "did:op:" + "b" * 64
ALGO_DID = "did:op:" + "c" * 64
RAWCODE = {"rawcode": "print('rawcode algorithm')\n", "container": {"image": "python"}}
FAST = ("--read-timeout", "0.5", "--retries", "1", "--backoff", "0.05")


def configure(tmp: Path, inputs: list, algorithm: dict = RAWCODE, output: dict | None = None,
              env: dict | None = None, args: tuple = ()):
    write_workflow(tmp, inputs, algorithm, output)
    return run_pod(POD, tmp, {"diskGB": "2", **(env or {})}, args)


def test_url_inputs_rawcode_and_layout(tmp_path, datasets, ocean):
    ocean.ddos[DID_A] = {"id": DID_A, "services": []}
    files = [f"{datasets.url}/files/a.csv", f"{datasets.url}/files/b.csv",
             f"{datasets.url}/files/c.txt"]
    algorithm = {**RAWCODE, "id": ALGO_DID, "algocustomdata": {"threshold": 3}}
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": files},
                               {"index": 1, "id": DID_B, "url": f"{datasets.url}/files/c.txt"}],
                    algorithm, {"metadataUri": ocean.url})
    assert run.code == 0, run.stderr
    assert run.message == {"exitCode": 0}
    data = tmp_path / "data"
    folder_a = data / "inputs" / ("a" * 64)
    assert sorted(p.name for p in folder_a.iterdir()) == ["0", "1", "2"]
    assert (folder_a / "1").read_bytes() == b"x,y\n3,4\n"
    assert (data / "inputs" / ("b" * 64) / "0").read_bytes() == b"third file\n"
    assert json.loads((data / "ddos" / ("a" * 64)).read_text())["id"] == DID_A
    assert not (data / "ddos" / ("b" * 64)).exists()  # unknown to Aquarius: not fatal for urls
    algo = data / "transformations" / "algorithm"
    assert algo.read_text() == RAWCODE["rawcode"]
    assert algo.stat().st_mode & stat.S_IXUSR
    assert json.loads((data / "inputs" / "algoCustomData.json").read_text()) == {"threshold": 3}
    assert (data / "outputs").is_dir() and (data / "logs" / "algorithm.log").is_file()
    assert stat.S_IMODE((data / "outputs").stat().st_mode) == 0o777
    log = (data / "adminlogs" / "configure.log").read_text()
    assert "provisioning success" in log and DID_A in log


def test_one_gib_sparse_file_streams_with_bounded_memory(tmp_path, datasets):
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/big"}])
    assert run.code == 0, run.stderr
    target = tmp_path / "data" / "inputs" / ("a" * 64) / "0"
    assert target.stat().st_size == BIG
    with target.open("rb") as stream:
        for offset, mark in BIG_MARKS.items():
            stream.seek(offset)
            assert stream.read(len(mark)) == mark
    assert run.peak_rss < 100 * 2**20, f"peak RSS {run.peak_rss / 2**20:.1f} MiB"
    assert target.stat().st_blocks * 512 < BIG // 2  # zero runs stayed holes


def test_http_404_fails_data_without_retry(tmp_path, datasets):
    before = len(datasets.requests)
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": [
        f"{datasets.url}/files/a.csv", f"{datasets.url}/missing?token=s3cr3t"]}])
    assert run.code == 31
    host = datasets.url.removeprefix("http://")
    assert run.message == {"exitCode": 31, "stage": "data",
                           "input": {"did": DID_A, "fileIndex": 1},
                           "error": f"HTTP 404 from {host}"}
    assert datasets.requests[before:] == ["/files/a.csv", "/missing?token=s3cr3t"]
    assert "s3cr3t" not in (tmp_path / "data/adminlogs/configure.log").read_text() + run.stderr
    assert not (tmp_path / "data" / "transformations" / "algorithm").exists()


def test_connection_reset_twice_then_success(tmp_path, datasets):
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/flaky/a.csv"}],
                    args=("--backoff", "0.05"))
    assert run.code == 0, run.stderr
    assert datasets.hits["/flaky/a.csv"] == 3
    assert (tmp_path / "data" / "inputs" / ("a" * 64) / "0").read_bytes() == b"x,y\n1,2\n"


def test_5xx_is_retried_then_reported(tmp_path, datasets):
    before = datasets.requests.count("/error500")
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/error500"}],
                    args=FAST)
    assert run.code == 31 and "HTTP 503" in run.message["error"]
    assert datasets.requests.count("/error500") - before == 2  # one try + one retry


def test_slow_server_trips_the_read_timeout(tmp_path, datasets):
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/slow"}],
                    args=FAST)
    assert run.code == 31
    assert "timed out" in run.message["error"] or "broke" in run.message["error"]
    assert run.message["input"] == {"did": DID_A, "fileIndex": 0}


def test_a_body_shorter_than_announced_is_a_broken_transfer(tmp_path, datasets):
    before = datasets.requests.count("/short")
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/short"}],
                    args=FAST)
    assert run.code == 31 and "broke during the transfer" in run.message["error"]
    assert datasets.requests.count("/short") - before == 2  # transient: retried once


def test_a_compressed_body_is_stored_decoded(tmp_path, datasets):
    run = configure(tmp_path, [{"index": 0, "id": DID_A,
                                "url": f"{datasets.url}/gzip/a.csv"}])
    assert run.code == 0, run.stderr
    assert (tmp_path / "data" / "inputs" / ("a" * 64) / "0").read_bytes() == b"x,y\n1,2\n"


def test_redirect_is_followed_but_not_to_file_urls(tmp_path, datasets):
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/redirect/b.csv"}])
    assert run.code == 0, run.stderr
    assert (tmp_path / "data/inputs" / ("a" * 64) / "0").read_bytes() == b"x,y\n3,4\n"
    other = tmp_path / "second"
    other.mkdir()
    run = configure(other, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/redirect-file/x"}])
    assert run.code == 31 and "unsupported URL" in run.message["error"]


def test_content_disposition_cannot_choose_the_path(tmp_path, datasets):
    volume = tmp_path / "deep" / "er"
    volume.mkdir(parents=True)
    write_workflow(tmp_path, [{"index": 0, "id": DID_A,
                               "url": f"{datasets.url}/disposition/a.csv"}], RAWCODE)
    run = run_pod(POD, tmp_path, {"diskGB": "1", "VOLUME": str(volume / "data")})
    assert run.code == 0, run.stderr
    assert (volume / "data/inputs" / ("a" * 64) / "0").read_bytes() == b"x,y\n1,2\n"
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert not any(name.endswith("etc/x") or name == "x" for name in written), written


def test_disk_limit_is_enforced(tmp_path, datasets):
    run = configure(tmp_path, [{"index": 0, "id": DID_A, "url": f"{datasets.url}/big"}],
                    env={"diskGB": "0.001"})
    assert run.code == 31 and "disk limit" in run.message["error"]


def test_algorithm_from_urls_and_its_failure(tmp_path, datasets):
    algorithm = {"url": [f"{datasets.url}/files/algo.py", f"{datasets.url}/files/extra.json"],
                 "rawcode": "", "container": {"image": "python"}}
    run = configure(tmp_path, [], algorithm)
    assert run.code == 0, run.stderr
    folder = tmp_path / "data" / "transformations"
    assert (folder / "algorithm").read_bytes().startswith(b"print('hello")
    assert (folder / "1").read_bytes() == b'{"k": 1}\n'
    assert (folder / "algorithm").stat().st_mode & stat.S_IXOTH
    other = tmp_path / "second"
    other.mkdir()
    run = configure(other, [], {"id": ALGO_DID, "url": f"{datasets.url}/missing"})
    assert run.code == 32
    assert run.message["stage"] == "algorithm"
    assert run.message["algorithm"] == {"did": ALGO_DID, "fileIndex": 0}


def _remote_workflow(ocean, datasets_url: str):
    ocean.publish(DID_A, "compute-1", [b"remote file 0\n", b"remote file 1\n"], "0xorder-a")
    ocean.publish(ALGO_DID, "algo-1", [b"print('remote algorithm')\n"], "0xorder-algo")
    inputs = [{"index": 0, "id": DID_A, "remote": {"txId": "0xorder-a", "serviceId": "compute-1",
                                                   "userdata": {"rows": 10}}}]
    algorithm = {"id": ALGO_DID, "remote": {"txId": "0xorder-algo", "serviceId": "algo-1",
                                            "algouserdata": {"lr": 0.1}},
                 "container": {"image": "python", "tag": "3.12", "entrypoint": "python $ALGO"}}
    return inputs, algorithm, {"metadataUri": ocean.url}


def test_remote_inputs_and_algorithm_through_the_provider(tmp_path, ocean, datasets):
    inputs, algorithm, output = _remote_workflow(ocean, datasets.url)
    run = configure(tmp_path, inputs, algorithm, output, env={"OPERATOR_PRIVATE_KEY": OPERATOR_KEY})
    assert run.code == 0, run.stderr
    data = tmp_path / "data"
    assert (data / "inputs" / ("a" * 64) / "1").read_bytes() == b"remote file 1\n"
    assert (data / "transformations" / "algorithm").read_bytes() == b"print('remote algorithm')\n"
    assert json.loads((data / "ddos" / ("c" * 64)).read_text())["id"] == ALGO_DID
    assert [(d["did"], d["fileIndex"]) for d in ocean.downloads] == [
        (DID_A, 0), (DID_A, 1), (ALGO_DID, 0)]
    assert json.loads(ocean.downloads[0]["userdata"]) == {"rows": 10}
    assert json.loads(ocean.downloads[2]["userdata"]) == {"lr": 0.1}
    assert ocean.nonces[OPERATOR] > 0
    visible = (data / "adminlogs/configure.log").read_text() + run.stderr + json.dumps(run.message)
    assert "signature" not in visible and OPERATOR_KEY[2:] not in visible


def test_provider_refuses_a_wrong_key(tmp_path, ocean, datasets):
    inputs, algorithm, output = _remote_workflow(ocean, datasets.url)
    run = configure(tmp_path, inputs, algorithm, output,
                    env={"OPERATOR_PRIVATE_KEY": "0x" + "22" * 32})
    assert run.code == 31
    assert run.message["input"] == {"did": DID_A, "fileIndex": 0}
    assert run.message["error"].startswith("HTTP 400 from")
    assert ocean.refused == [] and ocean.downloads == []  # signed right, but not our consumer


def test_provider_refuses_a_forged_signature(tmp_path, ocean, datasets):
    """A signature by one key presented for another address recovers to the wrong signer."""
    from functions.configure.provider import download_signature
    from tests.pods.servers import provider_recover

    good = download_signature(DID_A, 1700000000000, OPERATOR_KEY)
    assert provider_recover(DID_A, "1700000000000", good) == OPERATOR
    assert provider_recover(DID_A, "1700000000001", good) != OPERATOR
    assert provider_recover(DID_B, "1700000000000", good) != OPERATOR


def test_remote_input_without_key_fails_clearly(tmp_path, ocean, datasets):
    inputs, algorithm, output = _remote_workflow(ocean, datasets.url)
    run = configure(tmp_path, inputs, algorithm, output)
    assert run.code == 31 and "OPERATOR_PRIVATE_KEY" in run.message["error"]


def test_missing_invalid_and_hostile_workflows(tmp_path):
    run = run_pod(POD, tmp_path, {"WORKFLOW": str(tmp_path / "absent.json")})
    assert run.code == 31 and run.message["stage"] == "workflow"
    assert "absent.json not found" in run.message["error"]
    (tmp_path / "workflow.json").write_text("{not json")
    run = run_pod(POD, tmp_path, {})
    assert run.code == 31 and "is not JSON" in run.message["error"]
    cases = {
        "stages[0].input[0]": [{"index": 0, "id": "did:op:../../etc", "url": "http://x/"}],
        "stages[0].input[0].url": [{"index": 0, "id": DID_A, "url": []}],
        "neither url nor remote": [{"index": 0, "id": DID_A}],
        "metadataUri is needed": [{"index": 0, "id": DID_A,
                                   "remote": {"txId": "0x1", "serviceId": "s"}}],
    }
    for expected, inputs in cases.items():
        write_workflow(tmp_path, inputs, RAWCODE)
        run = run_pod(POD, tmp_path, {})
        assert run.code == 31 and expected in run.message["error"], (expected, run.message)
    assert not (tmp_path / "etc").exists()
    write_workflow(tmp_path, [], {"rawcode": "short"})
    run = run_pod(POD, tmp_path, {})
    assert run.code == 31 and "stages[0].algorithm needs rawcode" in run.message["error"]


def test_help_and_bad_settings(tmp_path):
    result = subprocess.run([sys.executable, "-m", POD, "--help"], cwd=ROOT, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 0 and b"VOLUME" in result.stdout
    write_workflow(tmp_path, [], RAWCODE)
    run = run_pod(POD, tmp_path, {"diskGB": "lots"})
    assert run.code == 31 and run.message["stage"] == "settings"
    assert "diskGB" in run.message["error"]
