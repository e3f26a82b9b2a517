"""scripts/check-disk.sh: CI's disk preflight sums each place's need per filesystem and
refuses a run the disk cannot hold, naming the shortfall and what to remove."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-disk.sh"


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "LYKEION_DISK_NEED_GB"}
    environment |= {"TMPDIR": str(tmp_path), **env}
    return subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )


def test_places_on_one_filesystem_are_summed(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "not-yet-made"  # a cache that does not exist: cold
    done = run(tmp_path, LYKEION_CACHE=str(cache))
    lines = [line for line in done.stdout.splitlines() if str(tmp_path) in line]
    # The cache (cold, 25), the clone (3) and the temporary folder (4) share tmp_path's
    # filesystem: one line with their sum (plus Go's caches when they are there too).
    line = next(line for line in lines if "project cache" in line)
    parts = dict(re.findall(r"(project cache|clone|temporary folder) \S+ (\d+) GB", line))
    assert parts == {"project cache": "25", "clone": "3", "temporary folder": "4"}
    total = int(re.search(r"needs about (\d+) GB", line).group(1))  # type: ignore[union-attr]
    assert total >= 25 + 3 + 4
    free = int(re.search(r"has (\d+) GB free", line).group(1))  # type: ignore[union-attr]
    assert done.returncode == (0 if free >= total else 1)


def test_a_short_disk_fails_naming_the_shortfall(tmp_path: Path) -> None:
    done = run(tmp_path, LYKEION_CACHE=str(tmp_path / "c"), LYKEION_DISK_NEED_GB="999999")
    assert done.returncode == 1
    assert re.search(r"is \d+ GB short", done.stderr)
    assert "LYKEION_CACHE" in done.stderr and "containerd" in done.stderr


def test_zero_skips_the_check(tmp_path: Path) -> None:
    done = run(tmp_path, LYKEION_CACHE=str(tmp_path / "c"), LYKEION_DISK_NEED_GB="0")
    assert done.returncode == 0, done.stderr
    assert "needs about 0 GB" in done.stdout


def test_a_warm_cache_needs_less(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "images").mkdir(parents=True)
    (cache / "images" / "python-3.11-bookworm.tar").write_bytes(b"x")
    done = run(tmp_path, LYKEION_CACHE=str(cache))
    assert re.search(r"project cache \S+ 12 GB", done.stdout), done.stdout


def test_an_override_that_is_not_whole_gb_is_refused(tmp_path: Path) -> None:
    done = run(tmp_path, LYKEION_CACHE=str(tmp_path / "c"), LYKEION_DISK_NEED_GB="20G")
    assert done.returncode == 2
    assert "LYKEION_DISK_NEED_GB=20G" in done.stderr and "needs about" not in done.stdout
