"""What status.results keeps of a long result list (functions.publish.decide)."""

from __future__ import annotations

import json

from functions.publish import decide
from shared.jobs import Outcome

MANIFEST = "file:///results/wf/results.json"


def result(index: int, kind: str = "output", name_length: int = 20) -> dict:
    filename = f"{index:05d}-" + "x" * name_length
    return {"index": index, "filename": filename, "filesize": 1, "type": kind,
            "url": f"file:///results/wf/outputs/{filename}"}


def many(count: int, name_length: int) -> list[dict]:
    entries = [result(i, name_length=name_length) for i in range(count)]
    return entries + [result(count, "algorithmLog"), result(count + 1, "publishLog")]


def test_a_short_list_is_kept_whole() -> None:
    results = many(3, 20)
    assert decide.recorded(results, MANIFEST) == {
        "results": results, "resultsCount": 5, "resultsManifest": MANIFEST}


def test_a_long_list_keeps_the_logs_and_the_first_outputs_within_the_budget() -> None:
    results = many(5000, 400)
    kept = decide.recorded(results, MANIFEST)
    listed = kept["results"]
    assert len(json.dumps(listed)) <= decide.STATUS_RESULTS_BYTES
    assert kept["resultsCount"] == 5002 and kept["resultsManifest"] == MANIFEST
    assert {entry["type"] for entry in listed[-2:]} == {"algorithmLog", "publishLog"}
    outputs = [entry["index"] for entry in listed if entry["type"] == "output"]
    assert outputs == list(range(len(outputs))) and 100 < len(outputs) < 5000


def test_the_condition_says_where_the_rest_is() -> None:
    status = {"statusCode": 60, "statusText": "Publishing results", "phase": "Running"}
    done = decide.published(status, Outcome(True, "Completed", 0, ""), many(5000, 400), None,
                            MANIFEST)
    published = next(c for c in done["conditions"] if c["type"] == "Published")
    assert published["status"] == "True" and MANIFEST in published["message"]
    assert published["message"].startswith("5002 results; the status lists ")
    whole = decide.published(status, Outcome(True, "Completed", 0, ""), many(2, 20), None,
                             MANIFEST)
    assert next(c for c in whole["conditions"] if c["type"] == "Published")["message"] == ""
