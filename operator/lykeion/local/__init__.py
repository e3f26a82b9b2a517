"""Local infrastructure: what runs on this machine for `lykectl up`, the tests and the
benchmarks.

- `ports` — free TCP ports (`free_port`);
- `processes` — a process in its own group: start, stop (SIGTERM, then SIGKILL), wait
  until a port answers;
- `readiness` — wait until a server answers over HTTP;
- `tools` — kubectl, openssl and kubeconfigs, shared with `lykeion.cluster`;
- `controlplane` — etcd + kube-apiserver (`ControlPlane`);
- `tracking_server` — the MLflow tracking server (`TrackingServer`).

The one-node cluster (`lykeion.cluster`) builds on the same helpers.
"""
