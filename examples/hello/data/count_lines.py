"""Count the lines of every dataset file under $INPUTS; write the total to count.txt."""

import os
from pathlib import Path

inputs, outputs = Path(os.environ["INPUTS"]), Path(os.environ["OUTPUTS"])
total = 0
for path in sorted(inputs.rglob("*")):
    if path.is_file() and path.name != "algoCustomData.json":
        lines = len(path.read_bytes().splitlines())
        print(f"{path.relative_to(inputs)}: {lines} lines")
        total += lines
(outputs / "count.txt").write_text(f"{total}\n")
print(f"total: {total} lines")
