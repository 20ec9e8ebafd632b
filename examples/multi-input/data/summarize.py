"""Summarize every dataset: rows per file, per DID (the DIDS variable lists them)."""

import json
import os
from pathlib import Path

inputs, outputs = Path(os.environ["INPUTS"]), Path(os.environ["OUTPUTS"])
summary = {}
for did in json.loads(os.environ["DIDS"]):
    files = sorted(p for p in (inputs / did).iterdir() if p.is_file())
    rows = {p.name: len(p.read_text().splitlines()) - 1 for p in files}  # minus the header
    summary[did] = {"files": len(files), "rows": sum(rows.values()), "per_file": rows}
    (outputs / "per-dataset").mkdir(exist_ok=True)
    (outputs / "per-dataset" / f"{did}.txt").write_text(f"{summary[did]['rows']}\n")
    print(f"{did}: {len(files)} files, {summary[did]['rows']} rows")
(outputs / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
