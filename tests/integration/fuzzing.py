"""Fuzz drivers for the real model server and Feature API processes ("never a 500").

- `fuzz_v2`: Schemathesis cases from the Open Inference Protocol's OpenAPI document
  (`tests/specs/`), positive and negative, sent to a running model server; plus a
  focused copy of the document whose inputs are named by the model's entity key (so that
  requests get past the name check into shapes, datatypes, key parsing, the store read
  and the model), well-formed key tensors of random keys (text, or integers of an integer
  datatype) on the unversioned and versioned paths, plus bodies of the binary tensor
  extension with random sizes.
- `fuzz_graphql`: Schemathesis (hypothesis-graphql) queries from the Feature API's own
  schema, read by introspection from the running process, positive and negative; plus
  typed lookups with random JSON variables.

Each response must be below 500, except the documented 503 naming the store, and match
the protocol: documented statuses conform to the document's schemas (Schemathesis'
`response_schema_conformance`), V2 and plain errors are `{"error": text}`, GraphQL
answers hold `data` or `errors` with a message and an `extensions.code`.

Hypothesis runs derandomized (a fixed seed derived from each test) with no example
database, so a CI run is the same run every time; `examples` bounds each part.
Used by `tests/integration/test_fuzz.py` (small budget) and `benchmarks/fuzz.py` (long).
"""

from __future__ import annotations

import copy
import json
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

SPEC = Path(__file__).resolve().parents[1] / "specs" / "open-inference-protocol-v2-rest.yaml"
BINARY_HEADER = "inference-header-content-length"
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
             "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"]  # fmt: skip


@dataclass
class FuzzReport:
    """What one run sent and what came back."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    parts: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Part -> (requests, seconds)."""

    def part(self, name: str, run: Callable[[], None]) -> None:
        """Run one part, timing it and counting its requests."""
        before, started = self.requests, time.perf_counter()
        run()
        self.parts[name] = (self.requests - before, round(time.perf_counter() - started, 2))

    def record(self, status: int) -> None:
        self.requests += 1
        self.statuses[status] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "parts": self.parts,
            "failures": self.failures[:20],
        }


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are recorded
        suppress_health_check=list(HealthCheck),
    )


def v2_document(model: str, key: str | None = None, version: str | None = None) -> dict[str, Any]:
    """The OpenAPI document for one model: `${X}` templates as `{X}`, the unversioned
    paths next to the versioned ones, the model name fixed; with `key`, every input is
    named `key` and shapes stay small, so bodies reach past the name check; with
    `version`, versioned paths name the served version or, one time in two of the
    values Schemathesis draws, another one (a 404)."""
    raw = yaml.safe_load(SPEC.read_text())
    paths: dict[str, Any] = {}
    for path, item in raw["paths"].items():
        path = path.replace("${", "{")
        paths[path] = item
        if "/versions/{MODEL_VERSION}" in path:
            short = copy.deepcopy(item)
            short["parameters"] = [p for p in short.get("parameters", [])
                                   if p["name"] != "MODEL_VERSION"]  # fmt: skip
            for operation in short.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    operation["operationId"] += "-unversioned"
            paths[path.replace("/versions/{MODEL_VERSION}", "")] = short
    for item in paths.values():
        for parameter in item.get("parameters", []):
            if parameter["name"] == "MODEL_NAME":
                parameter["schema"] = {"type": "string", "enum": [model]}
            if parameter["name"] == "MODEL_VERSION" and version is not None:
                parameter["schema"] = {"type": "string", "enum": [version, f"{version}.9"]}
    raw["paths"] = paths
    if key is not None:
        tensor = raw["components"]["schemas"]["request_input"]["properties"]
        tensor["name"] = {"type": "string", "enum": [key]}
        tensor["shape"] = {"type": "array", "maxItems": 2,
                           "items": {"type": "integer", "minimum": 0, "maximum": 3}}  # fmt: skip
        tensor["datatype"] = {"type": "string", "enum": [*DATATYPES, "STRING"]}
        raw["paths"] = {p: i for p, i in paths.items() if p.endswith("/infer")}
        raw["info"]["x-part"] = "focused"
    return raw


def _check_status(report: FuzzReport, label: str, response: Any) -> bool:
    """Record the response; False (and a failure) for a 5xx other than the store's 503."""
    status = int(response.status_code)
    report.record(status)
    text = response.text
    if status >= 500 and not (status == 503 and "online store unavailable" in text):
        report.failures.append(f"{label}: {status} {text[:300]}")
        return False
    if "Traceback" in text:
        report.failures.append(f"{label}: a traceback in the answer {text[:300]}")
        return False
    return True


def _check_error_object(report: FuzzReport, label: str, response: Any) -> None:
    if 400 <= response.status_code < 500 and response.status_code != 404:
        try:
            body = response.json()
        except ValueError:
            report.failures.append(f"{label}: {response.status_code} is not JSON")
            return
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            report.failures.append(f"{label}: error without an error message: {body!r:.300}")


def _run_openapi(report: FuzzReport, raw: dict[str, Any], url: str, examples: int,
                 mode: GenerationMode) -> None:  # fmt: skip
    schema = schemathesis.openapi.from_dict(raw)
    session = requests.Session()

    @_settings(examples)
    @given(case=schema.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=url, session=session, timeout=30)
        label = f"{case.method} {case.path} {mode.value} body={case.body!r:.200}"
        if not _check_status(report, label, response):
            return
        if case.path.endswith("/infer"):
            _check_error_object(report, label, response)
        try:
            case.validate_response(response, checks=[response_schema_conformance])
        except AssertionError as error:  # Schemathesis' check failures are AssertionErrors
            report.failures.append(f"{label}: {str(error)[:400]}")

    report.part(f"{raw['info'].get('x-part', 'document')} {mode.value}", run)
    session.close()


@st.composite
def binary_bodies(draw: st.DrawFn, key: str) -> tuple[bytes, str]:
    """A binary-extension request: a JSON header of tensors with (often wrong) sizes,
    random parts, and a header length that is right, off by a little, or not a number."""
    tensors = []
    for _ in range(draw(st.integers(1, 2))):
        tensor: dict[str, Any] = {
            "name": draw(st.sampled_from([key, key, "other"])),
            "shape": draw(st.lists(st.integers(-1, 4), max_size=2)),
            "datatype": draw(st.sampled_from([*DATATYPES, "STRING"])),
            "parameters": {
                "binary_data_size": draw(
                    st.one_of(st.integers(-1, 40), st.just(True), st.text(max_size=2))
                )
            },
        }
        if draw(st.booleans()):
            tensor["data"] = draw(st.lists(st.text(max_size=3), max_size=2))
        tensors.append(tensor)
    header = json.dumps({"inputs": tensors}).encode()
    part = draw(st.one_of(
        st.binary(max_size=48),
        st.lists(st.binary(max_size=6), max_size=4).map(
            lambda items: b"".join(struct.pack("<I", len(b)) + b for b in items)),
    ))  # fmt: skip
    length = draw(st.one_of(
        st.integers(-3, 3).map(lambda d: str(len(header) + d)),
        # Visible ASCII: control characters are refused by the HTTP parser (h11, before
        # the app, with a plain-text 400), other text by the client.
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4),
    ))  # fmt: skip
    return header + part, length


@st.composite
def key_tensors(draw: st.DrawFn, key: str) -> dict[str, Any]:
    """A well-formed inference request of one key tensor: random text keys as BYTES (the
    fixture's keys among them) or random integers in an integer datatype, so that bodies
    pass the request checks and reach key parsing, the store read and the model."""
    count = draw(st.integers(1, 5))
    datatype = draw(st.sampled_from(["BYTES", "BYTES", "INT64", "INT32", "UINT8"]))
    if datatype == "BYTES":
        element = st.sampled_from(["r1", "r2", "r3"]) | st.text(max_size=8)
    else:
        low, high = {"INT64": (-(2**63), 2**63 - 1), "INT32": (-(2**31), 2**31 - 1),
                     "UINT8": (0, 255)}[datatype]  # fmt: skip
        element = st.integers(low, high)
    data = draw(st.lists(element, min_size=count, max_size=count))
    request: dict[str, Any] = {
        "inputs": [{"name": key, "shape": [count], "datatype": datatype, "data": data}]
    }
    if draw(st.booleans()):
        request["id"] = draw(st.text(max_size=6))
    return request


def fuzz_v2(
    url: str,
    model: str,
    key: str,
    examples: int,
    binary_examples: int | None = None,
    version: str | None = None,
) -> FuzzReport:
    """`examples` cases per Schemathesis part (document positive/negative, focused
    positive/negative) and `binary_examples` (default `examples`) binary-extension bodies
    against the model server at `url`; `version`: the version it serves (versioned
    paths name it, or another one)."""
    report = FuzzReport()
    for raw in (v2_document(model, version=version), v2_document(model, key, version)):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_openapi(report, raw, url, examples, mode)
    infer = f"{url}/v2/models/{model}/infer"
    with httpx.Client(timeout=30) as client:

        @_settings(examples)
        @given(
            key_tensors(key), st.sampled_from(["", *([f"/versions/{version}"] if version else [])])
        )
        def keys(request: dict[str, Any], versioned: str) -> None:
            path = f"{url}/v2/models/{model}{versioned}/infer"
            response = client.post(path, json=request)
            label = f"keys {versioned or 'unversioned'} body={request!r:.200}"
            if _check_status(report, label, response):
                _check_error_object(report, label, response)
                if response.status_code == 200 and "outputs" not in response.json():
                    report.failures.append(f"{label}: 200 without outputs")

        report.part("well-formed keys", keys)

        @_settings(examples if binary_examples is None else binary_examples)
        @given(binary_bodies(key))
        def binary(body: tuple[bytes, str]) -> None:
            raw, length = body
            try:
                headers = {"content-type": "application/octet-stream", BINARY_HEADER: length}
                response = client.post(infer, content=raw, headers=headers)
            except (httpx.LocalProtocolError, UnicodeEncodeError):
                return  # a header value no HTTP client can send
            label = f"binary header={length!r} body={raw!r:.200}"
            if _check_status(report, label, response):
                _check_error_object(report, label, response)

        report.part("binary extension", binary)
    return report


# -- GraphQL -----------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _check_graphql(report: FuzzReport, label: str, response: Any) -> None:
    if not _check_status(report, label, response):
        return
    try:
        body = response.json()
    except ValueError:
        report.failures.append(f"{label}: {response.status_code} answer is not JSON")
        return
    if not isinstance(body, dict) or not ({"data", "errors"} & set(body)):
        report.failures.append(f"{label}: neither data nor errors: {body!r:.300}")
        return
    for error in body.get("errors") or []:
        if not isinstance(error.get("message"), str):
            report.failures.append(f"{label}: an error without a message: {error!r:.300}")
    if response.status_code != 200 and not body.get("errors"):
        report.failures.append(f"{label}: {response.status_code} without errors")


def fuzz_graphql(
    url: str, examples: int, lookups: list[str], variable_examples: int | None = None
) -> FuzzReport:
    """Schemathesis queries from the schema the Feature API at `url` introspects to,
    positive and negative, `examples` each; then `lookups` (queries taking a variable
    `$k`) with random JSON values of `$k`, `variable_examples` (default `examples`)."""
    report = FuzzReport()
    schema = schemathesis.graphql.from_url(f"{url}/graphql")
    session = requests.Session()

    def queries(mode: GenerationMode) -> Callable[[], None]:
        @_settings(examples)
        @given(case=schema.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            response = case.call(base_url=f"{url}/graphql", session=session, timeout=30)
            _check_graphql(report, f"{mode.value} query={case.body!r:.300}", response)

        return run

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        report.part(f"schema {mode.value}", queries(mode))
    session.close()
    with httpx.Client(timeout=30) as client:

        @_settings(examples if variable_examples is None else variable_examples)
        @given(st.sampled_from(lookups), json_values)
        def variables(query: str, value: Any) -> None:
            response = client.post(f"{url}/graphql", json={"query": query,
                                                           "variables": {"k": value}})  # fmt: skip
            _check_graphql(report, f"{query} k={value!r:.200}", response)

        report.part("variables", variables)
    return report
