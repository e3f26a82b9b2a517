"""Where work runs. Handlers see only `Executor`; configuration picks the implementation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lykeion.executors.base import Executor, State, Work, WorkStatus
from lykeion.executors.ca_bundle import CaBundle


def make_executor(
    name: str,
    kube: Any,
    state_dir: Path | None = None,
    data_volume: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    job_env: Mapping[str, str] | None = None,
    kubeconfig: str | None = None,
    ca_bundle: CaBundle | None = None,
) -> Executor:
    """`local` (processes whose records live in `state_dir`, default `~/.lykeion/runs`)
    or `kubernetes`, which mounts `data_volume` (a volume source) at `data_dir` in every
    Job and model server when both are given, and `ca_bundle` with its variables when
    given, and puts `job_env` (the platform's variables, e.g. the package index's) in
    every Job's environment; `local` (whose processes have the operator's own environment
    and trust store) gives its model servers
    `kubeconfig` (the operator's own) as `KUBECONFIG` for their access reviews; raises
    ValueError for another name."""
    if name == "local":
        from lykeion.executors.local import LocalExecutor

        return LocalExecutor(state_dir or Path.home() / ".lykeion" / "runs", kubeconfig)
    if name == "kubernetes":
        from lykeion.executors.kubernetes import DataVolume, KubernetesExecutor

        data = (
            DataVolume(data_volume, str(data_dir))
            if data_volume is not None and data_dir is not None
            else None
        )
        return KubernetesExecutor(kube, data, job_env, ca_bundle)
    raise ValueError(f"unknown executor {name!r}; one of local, kubernetes")


__all__ = ["Executor", "State", "Work", "WorkStatus", "make_executor"]
