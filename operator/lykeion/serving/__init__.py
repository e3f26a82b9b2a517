"""The Lykeion model server: MLflow models served with their features from the online store.

`config.py` what a server serves; `enrich.py` keys -> model input from the online store;
`model.py` the loaded MLflow model; `protocols.py` Seldon v1, Open Inference (V2) and plain
JSON bodies; `app.py` the ASGI app; `skew.py` (with `recompute.py`) the continuous skew
check against the offline store; `drift.py` drift against the training set's statistics;
`router.py` the weighted router of the local backend. The Kubernetes objects that run
these servers are rendered beside the executor that applies them
(`lykeion.executors.kubernetes_render`).
"""
