"""Where work runs. Handlers see only `Executor`; configuration picks the implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lykeion.executors.base import Executor, State, Work, WorkStatus


def make_executor(name: str, kube: Any, state_dir: Path | None = None) -> Executor:
    """`local` (processes whose records live in `state_dir`, default `~/.lykeion/runs`)
    or `kubernetes`; raises ValueError for another name."""
    if name == "local":
        from lykeion.executors.local import LocalExecutor

        return LocalExecutor(state_dir or Path.home() / ".lykeion" / "runs")
    if name == "kubernetes":
        from lykeion.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor(kube)
    raise ValueError(f"unknown executor {name!r}; one of local, kubernetes")


__all__ = ["Executor", "State", "Work", "WorkStatus", "make_executor"]
