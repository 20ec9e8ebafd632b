"""Divide 100 by every number of the dataset; the zero on the last line crashes it."""

import os
from pathlib import Path

for path in sorted(Path(os.environ["INPUTS"]).rglob("*")):
    if path.is_file() and path.name != "algoCustomData.json":
        for line in path.read_text().split():
            print(f"100 / {line} = {100 / int(line)}", flush=True)
