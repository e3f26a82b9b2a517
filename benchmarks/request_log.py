"""Peak memory of the model server's request log reader (`serving/request_log.py`) asked
for the live metric's rows, on a generated log.

    python benchmarks/request_log.py [--files 4] [--mib 64] [--tail 0.1]
        [--code operator] [--out benchmarks/results/request_log.json]

The log: `--files` full files of `--mib` MiB, rotated as the server rotates them, with one
line per row as servers wrote them before the line per request (one of 50,000 rider keys,
three features, a score; ~175 bytes a row; readers take both shapes) spread evenly over up
to an hour. A line per request of 50 rows holds a row in ~42 bytes: the same files then
hold four times the rows, and a reader that keeps them all 3.3 times the memory
(`ServerConfig.request_log_max_bytes`). Each case runs in a fresh interpreter
that imports the reader from `--code` (another checkout's `operator` folder measures that
code; a reader without `bounded` is measured unbounded only) and reports its peak resident
memory (VmHWM) after one ask, less the interpreter's own peak before it read.

  unbounded, all     every row kept, the whole log asked for
  unbounded, tail    every row kept, the rows of the last `--tail` of the time asked for
  bounded, all       `bounded=True`, the whole log asked for (it keeps every row too)
  bounded, tail      `bounded=True`, the last `--tail` asked for (a rollout's step)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
START = 1_796_040_000.0
"""Epoch seconds of the first row."""
SPAN = 3600.0
"""Seconds the rows are spread over."""

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from lykeion.serving import request_log

def peak_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")

path, files, bounded, since = Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
before = peak_kib()
extra = {"bounded": True} if bounded else {}
try:
    reader = request_log.LogReader(path, files, "1.0", ["rider_id"], **extra)
except TypeError:  # a reader before `bounded`
    print(json.dumps(None))
    sys.exit(0)
started = time.perf_counter()
rows = reader.rows(None if since == "-" else int(since), None)
seconds = time.perf_counter() - started
print(json.dumps({"module": request_log.__file__, "rows": len(rows), "seconds": seconds,
                  "peak_mib": (peak_kib() - before) / 1024, "baseline_mib": before / 1024}))
"""


def generate(path: Path, files: int, mib: int) -> tuple[int, float]:
    """Write the log (module docstring) with the server's own rotation, in batches of 1000
    rows, until one more batch would rotate a full file away; returns its rows and the
    time of the last one (epoch seconds)."""
    from lykeion.serving.request_log import RequestLog, files_of

    budget = files * mib * 1024 * 1024
    log = RequestLog(path, mib * 1024 * 1024, files)
    oldest = files_of(path, files)[0]
    written = rows = 0
    while True:
        batch = b"".join(
            orjson.dumps(
                {
                    "time": START + SPAN * (written + 175 * i) / budget,
                    "version": "1.0",
                    "keys": {"rider_id": f"r{(rows + i) % 50_000:05d}"},
                    "features": {
                        "rider__age": 18 + (rows + i) % 60,
                        "rider__drop_offs_count": (rows + i) % 7,
                        "rider__avg_fare": round(5 + ((rows + i) % 300) / 10, 1),
                    },
                    "prediction": round(((rows + i) * 7919 % 10_000) / 10_000, 4),
                }
            )
            + b"\n"
            for i in range(1000)
        )
        size = path.stat().st_size if path.exists() else 0
        if (files == 1 or oldest.exists()) and size + len(batch) > log.max_bytes:
            return rows, START + SPAN * (written - 175) / budget
        log.append(batch)
        written += len(batch)
        rows += 1000


def measure(
    code: Path, path: Path, files: int, bounded: bool, since: int | None
) -> dict[str, Any] | None:
    """One ask in a fresh interpreter (module docstring); None when the code's reader has
    no `bounded`."""
    found = subprocess.run(
        [sys.executable, "-c", CHILD, str(code), str(path), str(files), "1" if bounded else "0",
         "-" if since is None else str(since)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    result: dict[str, Any] | None = json.loads(found.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--tail", type=float, default=0.1, help="share of the time asked for")
    parser.add_argument("--code", type=Path, default=ROOT / "operator")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/request_log.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "requests.jsonl"
        started = time.perf_counter()
        total, last = generate(path, args.files, args.mib)
        size = sum(p.stat().st_size for p in path.parent.glob("requests.jsonl*"))
        print(f"log: {total:,} rows, {size / 2**20:.0f} MiB in {args.files} files "
              f"({time.perf_counter() - started:.0f} s); reader from {args.code}")  # fmt: skip
        tail = round((START + (last - START) * (1 - args.tail)) * 1_000_000)
        results: dict[str, dict[str, Any] | None] = {}
        for bounded in (False, True):
            for label, since in (("all", None), ("tail", tail)):
                case = f"{'bounded' if bounded else 'unbounded'}, {label}"
                results[case] = measure(args.code, path, args.files, bounded, since)
                found = results[case]
                if found is None:
                    print(f"{case:16} (this reader has no `bounded`)")
                    continue
                print(f"{case:16} rows {found['rows']:>9,.0f}  peak {found['peak_mib']:7.1f} MiB"
                      f"  ({found['seconds']:.1f} s) {found['module']}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"files": args.files, "mib": args.mib, **results}, indent=2))


if __name__ == "__main__":
    main()
