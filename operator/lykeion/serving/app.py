"""The model server's ASGI app: three protocols over one enrichment and one model.

Errors are answers, never stack traces: a body that cannot be understood is 400, keys
whose features are missing without a declared default are 422 naming them, an online
store that does not answer is 503 (and readiness fails until it answers again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from lykeion.access import (
    PREDICT,
    AccessReviewer,
    Forbidden,
    ReviewUnavailable,
    Right,
    Unauthenticated,
)
from lykeion.request_body import BodyTooLarge, read_body
from lykeion.serving import protocols, request_log
from lykeion.serving.config import ServerConfig
from lykeion.serving.drift import DriftMonitor
from lykeion.serving.enrich import BadRequest, Enriched, Enricher
from lykeion.serving.model import LoadedModel, OutputSpec, Prediction, Predictor
from lykeion.serving.outcomes import LiveLabels
from lykeion.serving.remote import PredictorUnavailable
from lykeion.serving.request_log import QueuedLog, RequestLog
from lykeion.serving.skew import SkewChecker
from lykeion.stores.online.base import OnlineStore, StoreUnavailable

log = logging.getLogger(__name__)

Parse = Callable[[Any, protocols.KeyTypes], list[protocols.Row]]

FLUSH_SECONDS = 5.0
"""How long `/analysis` waits for the request log's queued lines before it reads the log."""


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status,
        media_type="application/json",
    )  # fmt: skip


class MissingFeatures(Exception):
    def __init__(self, enriched: Enriched) -> None:
        self.enriched = enriched
        rows = [f"row {i}: {', '.join(m)}" for i, m in enumerate(enriched.missing) if m]
        super().__init__(
            "no value in the online store and no declared default for " + "; ".join(rows)
        )


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.seconds = Histogram(
            "lykeion_serving_request_seconds",
            "Prediction request latency, enrichment included",
            ["protocol"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.errors = Counter(
            "lykeion_serving_errors_total", "Requests answered with an error", ["code"],
            registry=self.registry,
        )  # fmt: skip
        self.missing = Counter(
            "lykeion_serving_missing_features_total",
            "Feature values the online store did not have (defaulted or rejected)",
            ["feature"],
            registry=self.registry,
        )


class DriftGauge:
    """`lykeion_feature_drift_psi{feature}`, computed when scraped (features without a
    PSI yet are left out: no data, not zero)."""

    def __init__(self, drift: DriftMonitor) -> None:
        self.drift = drift

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "lykeion_feature_drift_psi",
            "Population stability index of the latest served values against the training set",
            labels=["feature"],
        )
        for ref, psi, _, _ in self.drift.values():
            if psi is not None:
                family.add_metric([ref], psi)
        yield family


class ModelServer:
    """One loaded model version with its enrichment, independent of the protocol.

    `skew` (optional) samples requests for the continuous skew check; `drift` (optional)
    follows the served values' distribution against the training set's."""

    def __init__(
        self,
        config: ServerConfig,
        model: Predictor,
        enricher: Enricher,
        store: OnlineStore,
        skew: SkewChecker | None = None,
        drift: DriftMonitor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.enricher = enricher
        self.store = store
        self.metrics = metrics or Metrics()
        self.skew = skew
        self.drift = drift
        if drift is not None:
            self.metrics.registry.register(DriftGauge(drift))
        # Local reads and an in-process model answer in a millisecond: a thread hop would
        # cost more. A network store or a remote predictor runs off the event loop.
        self.inline = store.reads_inline and isinstance(model, LoadedModel)
        self._log = (
            QueuedLog(
                RequestLog(
                    Path(config.request_log),
                    config.request_log_max_bytes,
                    config.request_log_files,
                ),
                config.request_log_queue,
                self.metrics.registry,
            )
            if config.request_log
            else None
        )
        self._live: LiveLabels | None = None
        self._live_lock = threading.Lock()
        self._observed: OutputSpec | None = None

    @property
    def output(self) -> OutputSpec:
        """The output V2 metadata describes: as the last prediction returned it, else as
        the model declares it (a probe prediction at load, the predictor's metadata),
        else one FP64 per row."""
        return self._observed or self.model.output or OutputSpec("FP64", [-1])

    def predict(self, rows: list[dict[str, Any]]) -> tuple[Prediction, Enriched]:
        moment = datetime.now(UTC)
        enriched = self.enricher.lookup(self.store, rows, moment)
        if self.skew is not None and self.skew.sampled():
            # Before the completeness check: a value the online store lacks but the
            # offline store has is skew too.
            self.skew.offer(self.enricher.keys(rows), enriched, moment)
        for index, refs in enumerate(enriched.missing):
            for ref in refs:
                self.metrics.missing.labels(ref).inc()
            for ref in enriched.defaulted[index]:
                self.metrics.missing.labels(ref).inc()
        if not enriched.complete:
            raise MissingFeatures(enriched)
        prediction = self.model.predict(enriched.columns)
        self._observed = prediction.output
        if self.drift is not None:
            self.drift.observe(enriched.columns)
        if self._log is not None:
            self._append(rows, enriched, prediction)
        return prediction, enriched

    def _append(
        self, rows: list[dict[str, Any]], enriched: Enriched, prediction: Prediction
    ) -> None:
        """Queue the request's log line (one `orjson.dumps`; the writer thread appends it)."""
        assert self._log is not None
        self._log.put(
            request_log.line(
                time.time(), self.config.version, rows, enriched.columns, prediction.values
            )
        )

    def close(self) -> None:
        """Write the request log's queued lines and stop the background threads (the log's
        writer, the skew check's worker)."""
        if self._log is not None:
            self._log.close()
        if self.skew is not None:
            self.skew.stop()

    def analysis(self, since: datetime | None = None, metric: str | None = None) -> dict[str, Any]:
        """`GET /analysis`: the skew check's counts per feature since start, drift over the
        window's values served at or after `since` (all of them without), and with
        `metric` and `labels` configured, that metric of this version's requests logged
        since `since` joined to their delayed outcomes (`outcomes.py`). The shape rollouts
        read; a check that is off has no features (no `labels` object)."""
        found: dict[str, Any] = {
            "skew": {"features": self.skew.analysis() if self.skew is not None else {}},
            "drift": {
                "features": self.drift.analysis(since) if self.drift is not None else {},
                **({"window": self.drift.window} if self.drift is not None else {}),
            },
        }
        live = self._live_labels()
        if metric is not None and live is not None:
            if self._log is not None:
                self._log.flush(FLUSH_SECONDS)  # the requests answered so far, in the file
            found["labels"] = live.measure(metric, since, datetime.now(UTC), self._classes()).wire()
        return found

    def _live_labels(self) -> LiveLabels | None:
        """One per server (made at the first poll): its reader keeps the log's offsets."""
        labels, log_path = self.config.labels, self.config.request_log
        if labels is None or log_path is None:
            return None
        with self._live_lock:
            if self._live is None:
                from lykeion.api.model import LabelsSource

                self._live = LiveLabels(
                    source=LabelsSource.model_validate(labels.source),
                    horizon_seconds=labels.horizon_seconds,
                    data_root=Path(labels.data_root),
                    offline_store=self.config.offline_store or "",
                    log=Path(log_path),
                    version=self.config.version,
                    key_types=self.enricher.key_types,
                    log_files=self.config.request_log_files,
                )
            return self._live

    def _classes(self) -> list[Any] | None:
        """The class order of the model's per-class scores, when it states one."""
        if not isinstance(self.model, LoadedModel):
            return None
        from mlflow.exceptions import MlflowException

        from lykeion.evaluation.scoring import model_classes

        try:
            return model_classes(self.model.pyfunc.get_raw_model())
        except (AttributeError, MlflowException):
            return None  # a flavor without a raw model

    def ready(self) -> str | None:
        """None when ready, else why not."""
        try:
            self.store.ping()
        except StoreUnavailable as error:
            return f"online store unavailable: {error}"
        return self.model.ready()


def parse_since(text: str) -> datetime | str:
    """`GET /analysis?since=`: an RFC 3339 time with a zone (`Z` or an offset), as UTC; else
    why not (what follows the parameter's name in a 400). Epoch numbers (`1e400`, `-inf`),
    times without a zone and times whose UTC value is out of Python's range (year 1 with a
    positive offset, year 9999 with a negative one) are refused, never a 500."""
    try:
        # RFC 3339 (section 5.6) allows "t" and "z" in lower case too.
        found = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return "is not an RFC 3339 time"
    if found.tzinfo is None:
        return "has no time zone"
    try:
        return found.astimezone(UTC)
    except OverflowError:
        return "is out of range"


def _metrics() -> list[str]:
    from lykeion.evaluation.scoring import METRICS

    return METRICS


def create_app(server: ModelServer, access: AccessReviewer | None = None) -> Starlette:
    """The routes of the three protocols, health, readiness and metrics. With `access`,
    predictions and model metadata need a bearer token and `create deployments/predict`
    on this Deployment (401/403 in the protocol's error object); the rest stays open."""
    config = server.config
    metrics = server.metrics
    predict_right = Right.of(PREDICT, config.namespace, config.name)

    async def denied(request: Request, protocol: str) -> Response | None:
        """None when the caller may predict, else the protocol's 401, 403 or 503."""
        if access is None:
            return None
        try:
            await access.check(request.headers.get("authorization"), predict_right)
        except (Unauthenticated, Forbidden, ReviewUnavailable) as error:
            metrics.errors.labels(str(error.status)).inc()
            return failure(protocol, error.status, str(error))
        return None

    key_types = server.enricher.key_types

    def failure(protocol: str, status: int, message: str, **extra: Any) -> Response:
        return json_response(protocols.error_body(protocol, status, message, **extra), status)

    async def run(
        request: Request, protocol: str, parse: Parse, answer: Callable[..., Any]
    ) -> Response:
        refused = await denied(request, protocol)
        if refused is not None:
            return refused
        started = time.perf_counter()
        code = 200
        try:
            try:
                raw = await read_body(request, config.max_body_bytes)
            except ClientDisconnect:
                # Nobody is left to answer (nginx's 499): not a server error to log.
                code = 499
                return Response(status_code=code)
            header = request.headers.get(protocols.BINARY_HEADER)
            if header is not None and protocol == "v2":
                body = protocols.v2_binary_body(raw, header)
            else:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError as error:
                    raise BadRequest(f"the body is not JSON: {error}") from error
            rows = parse(body, key_types)
            if server.inline:
                prediction, enriched = server.predict(rows)
            else:
                prediction, enriched = await run_in_threadpool(server.predict, rows)
            explain = request.query_params.get("explain") == "features"
            return json_response(answer(body, prediction, enriched, explain))
        except BodyTooLarge as error:
            code = 413
            return failure(protocol, code, str(error))
        except BadRequest as error:
            code = 400
            return failure(protocol, code, str(error))
        except MissingFeatures as error:
            code = 422
            return failure(protocol, code, str(error), missing=error.enriched.missing)
        except StoreUnavailable as error:
            code = 503
            return failure(protocol, code, f"online store unavailable: {error}")
        except PredictorUnavailable as error:
            code = 503
            return failure(protocol, code, str(error))
        finally:
            metrics.seconds.labels(protocol).observe(time.perf_counter() - started)
            if code != 200:
                metrics.errors.labels(str(code)).inc()

    async def plain(request: Request) -> Response:
        return await run(
            request, "plain", protocols.plain_rows,
            lambda body, p, e, x: protocols.plain_answer(config.name, config.version, p, e, x),
        )  # fmt: skip

    async def seldon(request: Request) -> Response:
        return await run(
            request, "seldon", protocols.seldon_rows,
            lambda body, p, e, x: protocols.seldon_answer(config.output, config.version, p, e, x),
        )  # fmt: skip

    def unknown_model(request: Request) -> Response | None:
        """V2's 404 for a model name or version this server does not serve, else None."""
        model, version = request.path_params["model"], request.path_params.get("version")
        if model != config.name:
            message = f"no model {model!r} here (this server serves {config.name!r})"
        elif version is not None and version != config.version:
            message = (
                f"model {model!r} has no version {version!r} here (this server serves "
                f"version {config.version!r})"
            )
        else:
            return None
        return failure("v2", 404, message)

    async def v2_infer(request: Request) -> Response:
        unknown = unknown_model(request)
        if unknown is not None:
            return unknown
        return await run(
            request,
            "v2",
            protocols.v2_rows,
            lambda body, p, e, x: protocols.v2_answer(
                config.name, config.version, config.output, p, e, x,
                body.get("id") if isinstance(body, dict) else None,
            ),
        )  # fmt: skip

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        reason = await run_in_threadpool(server.ready)
        if reason is None:
            return json_response({"ready": True, "version": config.version})
        return json_response({"ready": False, "reason": reason}, 503)

    async def v2_model_ready(request: Request) -> Response:
        unknown = unknown_model(request)
        if unknown is not None:
            return unknown
        return await ready(request)

    async def v2_metadata(request: Request) -> Response:
        refused = await denied(request, "v2")
        if refused is not None:
            return refused
        unknown = unknown_model(request)
        if unknown is not None:
            return unknown
        return json_response(
            {
                "name": config.name,
                "versions": [config.version],
                "platform": "lykeion",
                "inputs": [
                    {
                        "name": key,
                        "datatype": "INT64" if type_ == "int64" else "BYTES",
                        "shape": [-1],
                    }
                    for key, type_ in key_types.items()
                ],
                "outputs": [
                    {
                        "name": config.output,
                        "datatype": server.output.datatype,
                        "shape": server.output.shape,
                    }
                ],
                "parameters": {
                    "model_uri": server.model.uri,
                    "features": [f.ref for f in server.model.features],
                },
            }
        )

    async def v2_server(request: Request) -> Response:
        return json_response({"name": "lykeion", "version": "v2", "extensions": []})

    async def analysis(request: Request) -> Response:
        since_text = request.query_params.get("since")
        since = None
        if since_text:
            found = parse_since(since_text)
            if isinstance(found, str):
                return json_response({"error": f"since: {since_text[:64]!r} {found}"}, 400)
            since = found
        metric = request.query_params.get("metric") or None
        if metric is not None:
            # The gate's metrics need scikit-learn: imported once, off the event loop.
            known = await run_in_threadpool(_metrics)
            if metric not in known:
                return json_response(
                    {"error": f"metric: {metric[:64]!r} is not one of {', '.join(known)}"}, 400
                )
        # Reading the request log and the labels is file I/O: off the event loop.
        return json_response(await run_in_threadpool(server.analysis, since, metric))

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    # Seldon's gateways address `/seldon/<namespace>/<deployment>/...`, or without the
    # namespace; Seldon's executor calls the model container at `/api/v1.0/predictions`.
    seldon_paths = [
        "/api/v1.0/predictions",
        "/seldon/{deployment}/api/v1.0/predictions",
        "/seldon/{namespace}/{deployment}/api/v1.0/predictions",
    ]
    routes = [
        Route("/predict", plain, methods=["POST"]),
        *(Route(path, seldon, methods=["POST"]) for path in seldon_paths),
        Route("/v2/models/{model}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{model}/ready", v2_model_ready),
        Route("/v2/models/{model}/versions/{version}/ready", v2_model_ready),
        Route("/v2/models/{model}", v2_metadata),
        Route("/v2/models/{model}/versions/{version}", v2_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", v2_server),
        Route("/v2/", v2_server),
        Route("/healthz", live),
        Route("/live", live),
        Route("/ready", ready),
        Route("/metrics", prometheus),
        Route("/analysis", analysis),
    ]
    return Starlette(routes=routes)
