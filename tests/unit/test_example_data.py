"""The example's data files are exactly what the documented generator writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "forward"


def test_generator_reproduces_the_checked_in_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLE / "generate_data.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("rides.csv", "labels.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / "data" / name).read_bytes()
