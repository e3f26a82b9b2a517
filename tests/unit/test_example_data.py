"""The example's data files are exactly what the documented generator writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generator_reproduces_the_checked_in_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "forward" / "generate_data.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("rides.csv", "labels.csv"):
        assert (tmp_path / name).read_bytes() == (ROOT / "examples" / "forward" / "data" / name).read_bytes()
