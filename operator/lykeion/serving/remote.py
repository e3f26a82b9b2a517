"""Transformer mode: enrich here, predict on another server (KServe's predictor).

KServe starts a transformer container with `--model_name` and `--predictor_host`; the
Lykeion server then loads no model: it looks the features up as always and sends them to
`http://<predictor_host>/v2/models/<model_name>/infer`, one input per trained column, as
KServe's MLflow runtime (MLServer) expects them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np

from lykeion.serving.config import TrainedFeature
from lykeion.serving.model import OutputSpec, Prediction

_V2_TYPES = {"int64": "INT64", "float64": "FP64", "bool": "BOOL", "string": "BYTES"}


class PredictorUnavailable(RuntimeError):
    """The predictor did not answer, or answered an error (503 to the caller)."""


class RemotePredictor:
    def __init__(
        self,
        url: str,
        model_name: str,
        features: Sequence[TrainedFeature],
        timeout: float = 10.0,
    ) -> None:
        self.uri = f"{url.rstrip('/')}/v2/models/{model_name}"
        self.features = list(features)
        self._client = httpx.Client(timeout=timeout)
        self._declared: dict[str, str] | None = None
        self._output: OutputSpec | None = None

    @property
    def output(self) -> OutputSpec | None:
        """The predictor's one output as its V2 metadata declares it (None before the
        metadata was read, or when it declares none or several)."""
        return self._output

    def declared(self) -> dict[str, str]:
        """The predictor's input datatypes by name (its V2 metadata, from the model's
        signature), read once: a model trained on float columns wants FP64 even for an
        int64 feature."""
        if self._declared is None:
            try:
                answer = self._client.get(self.uri)
                answer.raise_for_status()
                metadata = answer.json()
                inputs = metadata.get("inputs") or []
                outputs = metadata.get("outputs") or []
            except (httpx.HTTPError, ValueError) as error:
                raise PredictorUnavailable(
                    f"predictor {self.uri} did not answer: {error}"
                ) from error
            self._declared = {i["name"]: i["datatype"] for i in inputs if "name" in i}
            if len(outputs) == 1 and {"datatype", "shape"} <= set(outputs[0]):
                shape = [int(n) for n in outputs[0]["shape"]]
                self._output = OutputSpec(str(outputs[0]["datatype"]), [-1, *shape[1:]])
        return self._declared

    def request(self, columns: Mapping[str, list[Any]]) -> dict[str, Any]:
        """The V2 request: one tensor per column; a missing value goes as null."""
        declared = self.declared()
        inputs = []
        for feature in self.features:
            values = columns[feature.column]
            datatype = declared.get(feature.column) or _V2_TYPES.get(feature.type, "BYTES")
            # A null among integers: the column travels as FP64, as pandas would hold it.
            if datatype == "INT64" and any(v is None for v in values):
                datatype = "FP64"
            if datatype in ("FP64", "FP32"):
                values = [None if v is None else float(v) for v in values]
            inputs.append(
                {"name": feature.column, "shape": [len(values)], "datatype": datatype,
                 "data": values}
            )  # fmt: skip
        return {"inputs": inputs}

    def predict(self, columns: Mapping[str, list[Any]]) -> Prediction:
        try:
            answer = self._client.post(f"{self.uri}/infer", json=self.request(columns))
        except httpx.HTTPError as error:
            raise PredictorUnavailable(f"predictor {self.uri} did not answer: {error}") from error
        if answer.status_code != 200:
            raise PredictorUnavailable(
                f"predictor {self.uri} answered {answer.status_code}: {answer.text[:300]}"
            )
        output = answer.json()["outputs"][0]
        shape = [int(n) for n in output["shape"]]
        values = np.asarray(output["data"]).reshape(shape).tolist()
        return Prediction(values, output.get("datatype", "FP64"), shape)

    def ready(self) -> str | None:
        try:
            answer = self._client.get(f"{self.uri}/ready")
        except httpx.HTTPError as error:
            return f"predictor {self.uri} does not answer: {error}"
        if answer.status_code != 200:
            return f"predictor {self.uri} is not ready"
        try:
            self.declared()
        except PredictorUnavailable as error:
            return str(error)
        return None
