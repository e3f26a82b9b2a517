"""The model server as clients see it: real processes on 127.0.0.1, a real MLflow model,
a real SQLite online store; the router and the local executor's endpoints around it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lykeion.executors.base import Endpoint, EndpointStatus, VersionServer
from lykeion.executors.local_endpoints import LocalEndpoints, Process, alive
from lykeion.serving.config import ServerConfig
from tests.integration.fuzzing import fuzz_v2
from tests.integration.serving_fixture import (
    KEY,
    NAME,
    NAMESPACE,
    RIDERS,
    TRAINED,
    ServedModel,
    ServerProcess,
    Servers,
    fill_store,
    manifest_body,
    served_model_fixture,  # noqa: F401
    servers_fixture,  # noqa: F401
    write_routes,
)
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
INFER = f"/v2/models/{NAME}/infer"


def stored(*keys: str) -> list[tuple[float | None, float | None]]:
    return [RIDERS[key] for key in keys]


def v2_body(*keys: str) -> dict[str, Any]:
    return {
        "inputs": [{"name": KEY, "shape": [len(keys)], "datatype": "BYTES", "data": list(keys)}]
    }


def flat(rows: list[list[float]]) -> list[float]:
    return [value for row in rows for value in row]


def same(predictions: Any, expected: list[list[float]]) -> bool:
    """Row by row, output by output, equal up to float formatting."""
    return bool(
        isinstance(predictions, list)
        and [len(row) for row in predictions] == [len(row) for row in expected]
        and flat(predictions) == pytest.approx(flat(expected), rel=1e-12)
    )


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The request log's lines (one per answered request), parsed."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def log_lines_since(path: Path, since: float) -> list[dict[str, Any]]:
    """The request log's lines of the requests answered at or after `since` (epoch
    seconds): the answers of earlier tests reach the file a moment after them
    (`request_log.LINGER_SECONDS`, longer on a loaded machine) and are not the next test's."""
    return [line for line in log_lines(path) if line["time"] >= since]


def rows_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Logged requests split into their rows: per row its keys, the features the model got
    (column -> value), its prediction and the request's version."""
    return [
        {
            "keys": keys,
            "features": {column: values[i] for column, values in line["features"].items()},
            "prediction": line["prediction"][i],
            "version": line["version"],
        }
        for line in lines
        for i, keys in enumerate(line["keys"])
    ]


def error_message(answer: httpx.Response) -> str:
    """The message of the protocol's own error object: Seldon's `status.info`, else `error`."""
    body = answer.json()
    if "status" in body:
        assert (
            body["status"]["status"] == "FAILURE" and body["status"]["code"] == answer.status_code
        )
        return str(body["status"]["info"])
    return str(body["error"])


def metric(text: str, sample: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


@pytest.fixture(scope="module")
def server(served_model: ServedModel, servers: Servers) -> ServerProcess:
    """Version 1.0, logging its requests."""
    return servers.server(
        "v1.0", served_model.config(request_log=str(servers.root / "v1.0" / "requests.jsonl"))
    )


@pytest.fixture(scope="module")
def second_version(served_model: ServedModel, servers: Servers) -> ServerProcess:
    """Version 1.1 of the same model, logging its requests."""
    return servers.server(
        "v1.1",
        served_model.config(
            version="1.1", request_log=str(servers.root / "v1.1" / "requests.jsonl")
        ),
    )


# -- 1. one prediction, three protocols --------------------------------------------------


def test_three_protocols_answer_what_the_model_predicts_in_process(
    served_model: ServedModel,
    server: ServerProcess,
) -> None:
    keys = ("r1", "r2", "r3")
    expected = served_model.expected(stored(*keys))
    assert len(expected) == 3 and all(len(row) == 2 for row in expected)

    plain = server.post("/predict", {"keys": [{KEY: k} for k in keys]})
    assert plain.status_code == 200, plain.text
    assert plain.json()["version"] == "1.0"
    assert same(plain.json()["predictions"], expected)

    rows = [[k] for k in keys]
    seldon = server.post("/api/v1.0/predictions", {"data": {"names": [KEY], "ndarray": rows}})
    assert seldon.status_code == 200, seldon.text
    assert seldon.json()["data"]["names"] == ["score_0", "score_1"]
    assert same(seldon.json()["data"]["ndarray"], expected)
    assert seldon.json()["meta"]["tags"]["lykeion.version"] == "1.0"

    v2 = server.post(INFER, {"id": "req-7", **v2_body(*keys)})
    assert v2.status_code == 200, v2.text
    answer = v2.json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (NAME, "1.0", "req-7")
    [output] = answer["outputs"]
    assert (output["name"], output["shape"], output["datatype"]) == ("score", [3, 2], "FP64")
    assert output["data"] == pytest.approx(flat(expected), rel=1e-12)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/v1.0/predictions",
            {"data": {"names": [KEY], "tensor": {"shape": [2, 1], "values": ["r3", "r1"]}}},
        ),
        ("/api/v1.0/predictions", {"jsonData": {KEY: ["r3", "r1"]}}),
        (
            f"/seldon/{NAMESPACE}/{NAME}/api/v1.0/predictions",
            {"data": {"names": [KEY], "ndarray": [["r3"], ["r1"]]}},
        ),
        (f"/v2/models/{NAME}/versions/1.0/infer", v2_body("r3", "r1")),
    ],
    ids=["seldon-tensor", "seldon-jsonData", "seldon-gateway-path", "v2-versioned-path"],
)
def test_other_request_shapes_answer_the_same(
    served_model: ServedModel,
    server: ServerProcess,
    path: str,
    body: dict[str, Any],
) -> None:
    expected = served_model.expected(stored("r3", "r1"))
    answer = server.post(path, body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    if "outputs" in data:
        assert data["outputs"][0]["data"] == pytest.approx(flat(expected), rel=1e-12)
    else:
        assert same(data["data"]["ndarray"], expected)


def test_explain_returns_the_stored_feature_values(server: ServerProcess) -> None:
    answer = server.post("/predict?explain=features", {"keys": [{KEY: "r2"}, {KEY: "r1"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["features"] == [
        {"rider__age": 41, "rider__avg_fare": 31.0},
        {"rider__age": 23, "rider__avg_fare": 8.5},
    ]
    v2 = server.post(f"{INFER}?explain=features", v2_body("r3"))
    assert v2.json()["parameters"]["features"] == [{"rider__age": 67, "rider__avg_fare": 17.25}]
    # Without the parameter the stored values stay out of the answer.
    assert "features" not in server.post("/predict", {KEY: "r2"}).json()


def test_keep_alive_requests_are_not_held_back_by_nagle(server: ServerProcess) -> None:
    seconds = []
    with httpx.Client(timeout=10.0) as client:  # one connection, kept alive
        for _ in range(15):
            started = time.perf_counter()
            assert client.post(f"{server.url}/predict", json={KEY: "r1"}).status_code == 200
            seconds.append(time.perf_counter() - started)
    # A prediction takes ~1 ms here; Nagle against delayed ACK adds a steady 40 ms.
    assert sorted(seconds)[len(seconds) // 2] < 0.02, seconds


# -- 2. errors are answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/predict", b'{"rider_id": ', 400, ["not JSON"]),
        ("/api/v1.0/predictions", b"data=r1", 400, ["not JSON"]),
        (INFER, b"{", 400, ["not JSON"]),
        ("/predict", b"[1, 2]", 400, ["JSON object"]),
        ("/predict", {"driver_id": "d1"}, 400, ["missing entity key", KEY]),
        ("/api/v1.0/predictions", {"jsonData": {"driver_id": ["d1"]}}, 400, [KEY]),
        (INFER, {"inputs": [{**v2_body("d1")["inputs"][0], "name": "driver_id"}]}, 400, [KEY]),
        ("/predict", {KEY: "nobody"}, 422, ["rider.age", "rider.avg_fare"]),
        (INFER, v2_body("nobody"), 422, ["rider.age", "rider.avg_fare"]),
        ("/v2/models/other-model/infer", v2_body("r1"), 404, ["other-model"]),
    ],
    ids=[
        "plain-malformed-json", "seldon-malformed-json", "v2-malformed-json", "not-an-object",
        "plain-missing-key", "seldon-missing-key", "v2-missing-key",
        "plain-unknown-key", "v2-unknown-key", "v2-wrong-model",
    ],
)  # fmt: skip
def test_bad_requests_get_a_status_and_a_message_never_a_traceback(
    server: ServerProcess, path: str, body: Any, status: int, says: list[str]
) -> None:
    if isinstance(body, bytes):
        answer = server.post(path, content=body, headers={"content-type": "application/json"})
    else:
        answer = server.post(path, body)
    assert answer.status_code == status, answer.text
    assert "Traceback" not in answer.text
    message = error_message(answer)
    for word in says:
        assert word in message
    if status == 422:
        assert answer.json()["missing"] == [["rider.age", "rider.avg_fare"]]


_BINARY = "inference-header-content-length"


@pytest.mark.parametrize(
    ("path", "body", "binary"),
    [
        ("/api/v1.0/predictions", {"data": {"names": [KEY], "tensor": ["r1"]}}, False),
        ("/api/v1.0/predictions", {"data": {"names": [KEY], "tensor": {"values": ["r1"], "shape": [1, 0]}}}, False),  # noqa: E501
        (INFER, {"inputs": ["r1"]}, True),
        (INFER, {"inputs": [{**v2_body("r1")["inputs"][0], "parameters": [8]}]}, True),
    ],
    ids=["seldon-tensor-not-object", "seldon-tensor-zero-width", "v2-binary-input-not-object",
         "v2-binary-parameters-not-object"],
)  # fmt: skip
def test_malformed_tensors_are_bad_requests_not_server_errors(
    server: ServerProcess, path: str, body: Any, binary: bool
) -> None:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if binary:  # the V2 binary extension with a JSON header and no binary part
        headers[_BINARY] = str(len(raw))
    # A fresh connection: uvicorn closes one that ended in a 500.
    answer = httpx.post(f"{server.url}{path}", content=raw, headers=headers, timeout=30)
    assert answer.status_code == 400, answer.text
    assert error_message(answer)


# Each malformed request of issue 11 with the answer it must get: 400 and the protocol's
# error object naming the input, the element and what was expected.
def _binary(header: dict[str, Any], part: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + part, {"content-type": "application/octet-stream", _BINARY: str(len(head))}


def _binary_input(size: int, shape: list[int]) -> dict[str, Any]:
    return {"name": KEY, "shape": shape, "datatype": "BYTES",
            "parameters": {"binary_data_size": size}}  # fmt: skip


STRICT_CASES = [
    ("v2-shape-1-two-values", INFER,
     {"inputs": [{"name": KEY, "shape": [1], "datatype": "BYTES", "data": ["r1", "r2"]}]},
     [f"input {KEY}", "shape [1] holds 1", "data has 2"]),
    ("v2-shape-3-one-value", INFER,
     {"inputs": [{"name": KEY, "shape": [3], "datatype": "BYTES", "data": ["r1"]}]},
     ["shape [3] holds 3", "data has 1"]),
    ("v2-fp32-with-strings", INFER,
     {"inputs": [{"name": KEY, "shape": [1], "datatype": "FP32", "data": ["r1"]}]},
     [f"input {KEY}, element 0", "FP32 needs a number"]),
    ("v2-unknown-datatype", INFER,
     {"inputs": [{"name": KEY, "shape": [1], "datatype": "STRING", "data": ["r1"]}]},
     ["unknown datatype 'STRING'"]),
    ("v2-duplicate-input", INFER, {"inputs": [v2_body("r1")["inputs"][0]] * 2},
     [f"input {KEY} is given twice"]),
    ("v2-empty-key", INFER, v2_body(""), [f"input {KEY}, element 0", "non-empty string"]),
    ("seldon-empty-key", "/api/v1.0/predictions",
     {"data": {"names": [KEY], "ndarray": [["r1"], [""]]}},
     [f"data.ndarray[1][0] ({KEY})", "non-empty string"]),
    ("seldon-duplicate-names", "/api/v1.0/predictions",
     {"data": {"names": [KEY, KEY], "ndarray": [["r1", "r1"]]}}, ["names a column twice"]),
    ("seldon-strData-not-json", "/api/v1.0/predictions", {"strData": "r1"}, ["strData"]),
    ("plain-empty-key", "/predict", {"keys": [{KEY: "r1"}, {KEY: ""}]},
     [f"keys[1].{KEY}", "non-empty string"]),
    ("plain-unknown-field", "/predict", {KEY: "r1", "driver_id": "d1"},
     ["driver_id not an entity key"]),
]  # fmt: skip
BINARY_CASES = [
    ("binary-size-past-body", *_binary({"inputs": [_binary_input(99, [1])]}, b"\x02\0\0\0r1"),
     [f"input {KEY}: binary_data_size 99 runs past the end of the body"]),
    ("binary-trailing-bytes", *_binary({"inputs": [_binary_input(6, [1])]}, b"\x02\0\0\0r1xx"),
     ["2 byte(s) after the header"]),
    ("binary-length-prefix-past-part",
     *_binary({"inputs": [_binary_input(6, [1])]}, b"\x09\0\0\0r1"),
     [f"input {KEY}, element 0: length 9 runs past the end"]),
    ("binary-count-vs-shape", *_binary({"inputs": [_binary_input(6, [2])]}, b"\x02\0\0\0r1"),
     ["shape holds 2 element(s), the binary part has 1"]),
    ("binary-not-utf8", *_binary({"inputs": [_binary_input(6, [1])]}, b"\x02\0\0\0\xff\xfe"),
     [f"input {KEY}, element 0: the bytes are not UTF-8 text"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "says"), [c[1:] for c in STRICT_CASES], ids=[c[0] for c in STRICT_CASES]
)
def test_strict_requests_are_refused_naming_input_element_and_expectation(
    server: ServerProcess, path: str, body: Any, says: list[str]
) -> None:
    answer = server.post(path, body)
    assert answer.status_code == 400, answer.text
    message = error_message(answer)
    for words in says:
        assert words in message, message


@pytest.mark.parametrize(
    ("raw", "headers", "says"), [c[1:] for c in BINARY_CASES], ids=[c[0] for c in BINARY_CASES]
)
def test_binary_extension_sizes_are_checked_against_the_body(
    server: ServerProcess, raw: bytes, headers: dict[str, str], says: list[str]
) -> None:
    answer = server.post(INFER, content=raw, headers=headers)
    assert answer.status_code == 400, answer.text
    for words in says:
        assert words in answer.json()["error"]


@pytest.fixture(scope="module")
def int64_server(served_model: ServedModel, servers: Servers) -> ServerProcess:
    """The same model with riders keyed by int64 (the store holds none of these keys)."""
    manifest = manifest_body()
    manifest["spec"]["entity"]["keyType"] = "int64"
    return servers.server("int64", served_model.config(manifests=[manifest]))


INT64_REFUSED = ["--5", "\u00b2", "9223372036854775808", 2**63, 1e19]


@pytest.mark.parametrize("key", INT64_REFUSED, ids=[repr(k) for k in INT64_REFUSED])
def test_int64_keys_out_of_type_or_range_are_400_on_every_protocol(
    int64_server: ServerProcess, key: Any
) -> None:
    bodies = [
        ("/predict", {KEY: key}),
        ("/api/v1.0/predictions", {"data": {"names": [KEY], "ndarray": [[key]]}}),
        ("/api/v1.0/predictions", {"jsonData": {KEY: [key]}}),
    ]
    if isinstance(key, str):
        bodies.append((INFER, v2_body(key)))
    elif isinstance(key, int):
        bodies.append((INFER, {"inputs": [
            {"name": KEY, "shape": [1], "datatype": "UINT64", "data": [key]}]}))  # fmt: skip
    else:  # a double is no key tensor at all
        answer = int64_server.post(INFER, {"inputs": [
            {"name": KEY, "shape": [1], "datatype": "FP64", "data": [key]}]})  # fmt: skip
        assert answer.status_code == 400, answer.text
        assert f"input {KEY}: a key tensor must be BYTES" in error_message(answer)
    for path, body in bodies:
        # orjson refuses integers beyond 64 bits; the standard library writes them.
        answer = int64_server.post(path, content=json.dumps(body).encode(),
                                   headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 400, (path, body, answer.text)
        message = error_message(answer)
        assert "expected an int64" in message, message


@pytest.mark.parametrize("datatype", ["BYTES", "INT64", "INT32", "UINT8", "UINT64"])
def test_int64_key_tensors_are_taken_in_every_datatype_that_carries_them(
    int64_server: ServerProcess, datatype: str
) -> None:
    data: list[Any] = ["7"] if datatype == "BYTES" else [7]
    answer = int64_server.post(
        INFER, {"inputs": [{"name": KEY, "shape": [1], "datatype": datatype, "data": data}]}
    )
    # Accepted and looked up: no rider 7 in the store, so its features are missing.
    assert answer.status_code == 422, answer.text
    # Integral doubles, as SeldonClient sends keys, are the same key.
    seldon = int64_server.post("/api/v1.0/predictions",
                               {"data": {"names": [KEY], "tensor": {"shape": [1, 1], "values": [7.0]}}})  # fmt: skip  # noqa: E501
    assert seldon.status_code == 422, seldon.text
    assert seldon.json()["meta"]["tags"]["missing"] == [["rider.age", "rider.avg_fare"]]


# -- body size, versioned paths, metadata ------------------------------------------------

LIMIT = 1024 * 1024
"""ServerConfig.max_body_bytes' default, which the `server` fixture keeps."""

BODY_CASES = [
    ("/predict", {"keys": [{KEY: "r1"}]}, {}),
    ("/api/v1.0/predictions", {"jsonData": {KEY: ["r1"]}}, {}),
    (INFER, v2_body("r1"), {}),
    (f"/v2/models/{NAME}/versions/1.0/infer", v2_body("r1"), {}),
]
BODY_IDS = ["plain", "seldon", "v2", "v2-versioned"]


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes (whitespace after it: still the same JSON)."""
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize(("path", "body", "headers"), BODY_CASES, ids=BODY_IDS)
def test_a_body_over_the_limit_is_413_in_the_protocols_error_object(
    server: ServerProcess, path: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    at_limit = server.post(path, content=padded(body, LIMIT),
                           headers={"content-type": "application/json"})  # fmt: skip
    assert at_limit.status_code == 200, at_limit.text
    before = server.get("/metrics").text
    # A fresh connection per refusal: the server does not read the rest of the body.
    over = httpx.post(f"{server.url}{path}", content=padded(body, LIMIT + 1),
                      headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    assert over.status_code == 413, over.text
    message = error_message(over)
    assert str(LIMIT) in message and str(LIMIT + 1) in message
    if path.startswith("/api/"):
        assert over.json()["status"]["reason"] == "MICROSERVICE_BAD_DATA"

    # Chunked transfer encoding: no Content-Length to refuse on, counted as it streams.
    def chunks(total: int) -> Iterator[bytes]:
        raw = padded(body, total)
        for start in range(0, total, 64 * 1024):
            yield raw[start : start + 64 * 1024]

    streamed = httpx.post(f"{server.url}{path}", content=chunks(4 * LIMIT),
                          headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    assert streamed.status_code == 413, streamed.text
    assert "exceeds the limit of" in error_message(streamed)
    small = httpx.post(f"{server.url}{path}", content=chunks(4096),
                       headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    assert small.status_code == 200, small.text
    after = server.get("/metrics").text
    refused = "lykeion_serving_errors_total"
    assert metric(after, refused, code="413") - metric(before, refused, code="413") == 2


def test_a_binary_extension_body_over_the_limit_is_413(server: ServerProcess) -> None:
    keys = [b"r1"] * 2
    part = b"".join(len(k).to_bytes(4, "little") + k for k in keys)
    fits, headers = _binary({"inputs": [_binary_input(len(part), [2])]}, part)
    assert server.post(INFER, content=fits, headers=headers).status_code == 200
    # The same request claiming a part as large as the limit: refused before it is parsed.
    big = LIMIT
    raw, headers = _binary({"inputs": [_binary_input(big, [1])]}, b"\0" * big)
    answer = httpx.post(f"{server.url}{INFER}", content=raw, headers=headers, timeout=30)
    assert answer.status_code == 413, answer.text
    assert "exceeds the limit of" in answer.json()["error"]


def test_the_router_refuses_a_body_over_the_limit_before_forwarding(
    server: ServerProcess, servers: Servers
) -> None:
    router = servers.router(
        "router-cap", {"versions": [{"version": "1.0", "url": server.url, "weight": 100}],
                       "shadow": None},
    )  # fmt: skip
    headers = {"content-type": "application/json"}
    for path, body, _ in BODY_CASES:
        fits = router.post(path, content=padded(body, LIMIT), headers=headers)
        assert fits.status_code == 200, fits.text
        over = httpx.post(f"{router.url}{path}", content=padded(body, LIMIT + 1),
                          headers=headers, timeout=30)  # fmt: skip
        assert over.status_code == 413, over.text
        assert "exceeds the limit of" in error_message(over)


def test_v2_versioned_paths_answer_for_the_served_version_only(server: ServerProcess) -> None:
    base = f"/v2/models/{NAME}/versions"
    assert server.get(f"{base}/1.0/ready").status_code == 200
    metadata = server.get(f"{base}/1.0")
    assert metadata.status_code == 200 and metadata.json()["versions"] == ["1.0"]
    assert server.post(f"{base}/1.0/infer", v2_body("r1")).status_code == 200
    for answer in (
        server.get(f"{base}/2.0/ready"),
        server.get(f"{base}/2.0"),
        server.post(f"{base}/2.0/infer", v2_body("r1")),
    ):
        assert answer.status_code == 404, answer.text
        message = answer.json()["error"]  # V2's inference_error_response
        assert "no version '2.0'" in message and "serves version '1.0'" in message
    other = server.get("/v2/models/other-model/versions/1.0")
    assert other.status_code == 404 and "other-model" in other.json()["error"]


def test_v2_metadata_describes_the_output_infer_returns(server: ServerProcess) -> None:
    """The served model's pyfunc answers predict_proba: two probabilities per row."""
    [declared] = server.get(f"/v2/models/{NAME}").json()["outputs"]
    [returned] = server.post(INFER, v2_body("r1", "r2", "r3")).json()["outputs"]
    assert declared["name"] == returned["name"] == "score"
    assert declared["datatype"] == returned["datatype"] == "FP64"
    assert declared["shape"] == [-1, 2] and returned["shape"] == [3, 2]


FUZZ_EXAMPLES = 30
"""Per Schemathesis part (the V2 document and its focused copy, positive and negative);
the binary-extension part, far cheaper per request, gets fifteen times as many. About 45 s
on the shared CI machine; `benchmarks/fuzz.py --examples N` runs the same drivers longer."""


def test_fuzzing_from_the_v2_openapi_document_finds_no_server_error(
    server: ServerProcess,
) -> None:
    report = fuzz_v2(server.url, NAME, KEY, FUZZ_EXAMPLES, binary_examples=15 * FUZZ_EXAMPLES,
                     version="1.0")  # fmt: skip
    print(json.dumps({"v2 fuzzing": report.summary()}))
    assert report.failures == [], "\n".join(report.failures[:10])
    assert report.requests >= 15 * FUZZ_EXAMPLES
    # The focused copy and the well-formed keys get past the request checks into lookups
    # and predictions (unknown keys: 422).
    assert report.statuses[400] > 0 and report.statuses[200] > 0 and report.statuses[422] > 0


def test_declared_defaults_stand_in_for_unknown_keys(
    served_model: ServedModel,
    servers: Servers,
) -> None:
    server = servers.server(
        "defaults", served_model.config(defaults={"rider.age": "30", "rider.avg_fare": None})
    )
    answer = server.post("/predict?explain=features", {"keys": [{KEY: "nobody"}, {KEY: "r1"}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["defaulted"] == [["rider.age", "rider.avg_fare"], []]
    assert body["features"][0] == {"rider__age": 30, "rider__avg_fare": None}
    # null reaches the model as NaN, which its imputer fills as it did in training.
    expected = served_model.expected([(30, None), RIDERS["r1"]])
    assert same(body["predictions"], expected)

    seldon = server.post("/api/v1.0/predictions", {"jsonData": {KEY: ["nobody"]}})
    assert seldon.status_code == 200, seldon.text
    assert seldon.json()["meta"]["tags"]["defaulted"] == [["rider.age", "rider.avg_fare"]]
    # A key the store knows is not reported as defaulted.
    assert "defaulted" not in server.post("/predict", {KEY: "r2"}).json()


# -- 3. the online store goes away and comes back ----------------------------------------


@pytest.fixture
def own_store_server(
    served_model: ServedModel,
    tmp_path: Path,
) -> Iterator[tuple[ServerProcess, Path]]:
    """A server on a store file of its own, which the test may take away."""
    store = tmp_path / "online.db"
    fill_store(store)
    made = Servers(tmp_path / "servers")
    try:
        config = served_model.config(online_store=f"sqlite://{store}")
        yield made.server("server", config), store
    finally:
        made.stop_all()


def _predict_r1(server: ServerProcess) -> httpx.Response:
    return server.post("/predict", {KEY: "r1"})


@contextlib.contextmanager
def moved_aside(store: Path) -> Iterator[None]:
    """The store file is gone (renamed) inside the block and back in place after it."""
    aside = store.with_name("aside.db")
    store.rename(aside)
    try:
        yield
    finally:
        os.replace(aside, store)


def test_a_vanished_store_file_fails_readiness_until_it_is_back(
    served_model: ServedModel,
    own_store_server: tuple[ServerProcess, Path],
) -> None:
    server, store = own_store_server
    assert _predict_r1(server).status_code == 200
    with moved_aside(store):
        for path in ("/ready", "/v2/health/ready", f"/v2/models/{NAME}/ready"):
            answer = server.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert "online store" in answer.json()["reason"]
            assert str(store) in answer.json()["reason"]
    wait_for(lambda: server.get("/ready").status_code == 200, 10, "readiness to come back")
    answer = _predict_r1(server)
    assert answer.status_code == 200, answer.text
    assert same(answer.json()["predictions"], served_model.expected(stored("r1")))
    assert server.process is not None and server.process.poll() is None  # no restart


def test_predictions_answer_503_while_the_store_file_is_gone(
    own_store_server: tuple[ServerProcess, Path],
) -> None:
    server, store = own_store_server
    assert _predict_r1(server).status_code == 200
    with moved_aside(store):
        answer = _predict_r1(server)
    assert answer.status_code == 503, answer.text
    assert "online store unavailable" in error_message(answer)


def test_a_request_while_the_store_file_is_gone_leaves_no_empty_store_behind(
    served_model: ServedModel,
    own_store_server: tuple[ServerProcess, Path],
) -> None:
    server, store = own_store_server
    with moved_aside(store):
        during = _predict_r1(server)
    wait_for(lambda: server.get("/ready").status_code == 200, 10, "readiness to come back")
    after = _predict_r1(server)
    assert (during.status_code, after.status_code) == (503, 200), (during.text, after.text)


def test_a_store_restored_from_a_copy_is_served_again(
    served_model: ServedModel,
    own_store_server: tuple[ServerProcess, Path],
) -> None:
    server, store = own_store_server
    assert _predict_r1(server).status_code == 200
    backup = store.with_name("backup.db")
    shutil.copy(store, backup)
    store.unlink()
    assert server.get("/ready").status_code == 503
    shutil.copy(backup, store)
    wait_for(lambda: server.get("/ready").status_code == 200, 10, "readiness to come back")
    assert same(_predict_r1(server).json()["predictions"], served_model.expected(stored("r1")))


# -- 4. a model and its listed features must agree ---------------------------------------


def _age_as(type_: str) -> list[dict[str, str]]:
    return [{**TRAINED[0], "type": type_}, TRAINED[1]]


def _manifest_age_as(served_model: ServedModel, type_: str) -> list[dict[str, Any]]:
    [body] = served_model.config()["manifests"]
    for feature in body["spec"]["features"]:
        if feature["name"] == "age":
            feature["type"] = type_
    return [body]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        pytest.param(
            lambda m: {"features": TRAINED[:1]}, ["rider.avg_fare"], id="one-feature-less"
        ),
        pytest.param(
            lambda m: {
                "features": [
                    *TRAINED,
                    {"ref": "rider.trips", "column": "rider__trips", "type": "int64"},
                ]
            },
            ["rider.trips"],
            id="one-feature-more",
        ),
        pytest.param(
            lambda m: {"features": _age_as("float64")},
            ["rider.age", "int64", "float64"],
            id="listed-type-differs",
        ),
        pytest.param(
            lambda m: {"manifests": _manifest_age_as(m, "float64")},
            ["rider.age", "int64", "float64"],
            id="manifest-type-differs",
        ),
    ],
)
def test_a_feature_mismatch_stops_the_server_naming_the_difference(
    served_model: ServedModel,
    servers: Servers,
    request: pytest.FixtureRequest,
    change: Callable[[ServedModel], dict[str, Any]],
    says: list[str],
) -> None:
    folder = f"mismatch-{request.node.callspec.id}"
    server = servers.launch_server(folder, served_model.config(**change(served_model)))
    code = server.exit_code()
    assert code != 0, server.log
    assert not (server.folder / "endpoint.json").exists()
    message = server.log
    assert "cannot serve" in message and "Traceback" not in message, message
    for word in says:
        assert word in message, message


# -- 5. metrics ------------------------------------------------------------------------


def test_metrics_count_requests_by_protocol_and_missing_features(server: ServerProcess) -> None:
    before = server.get("/metrics").text
    for _ in range(3):
        assert server.post("/predict", {KEY: "r1"}).status_code == 200
    assert server.post(INFER, v2_body("r2")).status_code == 200
    assert server.post("/predict", {KEY: "nobody"}).status_code == 422
    after = server.get("/metrics")
    assert after.status_code == 200
    count = "lykeion_serving_request_seconds_count"

    def delta(sample: str, **labels: str) -> float:
        return metric(after.text, sample, **labels) - metric(before, sample, **labels)

    assert delta(count, protocol="plain") == 4
    assert delta(count, protocol="v2") == 1
    assert delta(count, protocol="seldon") == 0
    assert delta("lykeion_serving_request_seconds_sum", protocol="plain") > 0
    for feature in ("rider.age", "rider.avg_fare"):
        assert delta("lykeion_serving_missing_features_total", feature=feature) == 1
    assert delta("lykeion_serving_errors_total", code="422") == 1


# -- 6. request log ----------------------------------------------------------------------


def test_each_answered_row_is_appended_to_the_request_log(server: ServerProcess) -> None:
    path = server.folder / "requests.jsonl"
    since = time.time()
    answer = server.post("/predict", {"keys": [{KEY: "r2"}, {KEY: "r3"}]})
    assert answer.status_code == 200, answer.text
    seldon = server.post("/api/v1.0/predictions", {"jsonData": {KEY: ["r1"]}})
    assert seldon.status_code == 200
    # A rejected request predicted nothing, so it logs nothing.
    assert server.post("/predict", {KEY: "nobody"}).status_code == 422
    last = server.post("/predict", {KEY: "r2"})
    assert last.status_code == 200

    # Lines are appended by the log's writer thread a moment after the answers, in order.
    wait_for(lambda: len(log_lines_since(path, since)) >= 3, 10, "the request log's lines")
    lines = log_lines_since(path, since)
    assert [len(line["keys"]) for line in lines] == [2, 1, 1]  # one line per answered request
    new = rows_of(lines)
    assert [line["keys"] for line in new] == [{KEY: "r2"}, {KEY: "r3"}, {KEY: "r1"}, {KEY: "r2"}]
    assert [line["features"] for line in new] == [
        {"rider__age": 41, "rider__avg_fare": 31.0},
        {"rider__age": 67, "rider__avg_fare": 17.25},
        {"rider__age": 23, "rider__avg_fare": 8.5},
        {"rider__age": 41, "rider__avg_fare": 31.0},
    ]
    predicted = [
        *answer.json()["predictions"],
        *seldon.json()["data"]["ndarray"],
        *last.json()["predictions"],
    ]
    assert [line["prediction"] for line in new] == predicted
    assert {line["version"] for line in new} == {"1.0"}


# -- 7. the router ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def router(
    server: ServerProcess,
    second_version: ServerProcess,
    servers: Servers,
) -> ServerProcess:
    only_first = {"version": "1.0", "url": server.url, "weight": 100}
    return servers.router("router", {"versions": [only_first], "shadow": None})


def _routes(
    server: ServerProcess, second: ServerProcess, weights: tuple[int, int], shadow: bool = False
) -> dict[str, Any]:
    return {
        "versions": [
            {"version": "1.0", "url": server.url, "weight": weights[0]},
            {"version": "1.1", "url": second.url, "weight": weights[1]},
        ],
        "shadow": {"version": "1.1", "url": second.url} if shadow else None,
    }


def _versions_of(router: ServerProcess, count: int) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        answer = router.post("/predict", {KEY: "r1"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == answer.headers["x-lykeion-version"]
        seen[answer.headers["x-lykeion-version"]] += 1
    return seen


def test_router_splits_by_weight_and_picks_up_new_weights_without_a_restart(
    router: ServerProcess, server: ServerProcess, second_version: ServerProcess
) -> None:
    routes = router.folder / "routes.json"
    write_routes(routes, _routes(server, second_version, (80, 20)))
    seen = _versions_of(router, 300)
    assert set(seen) == {"1.0", "1.1"}
    assert 0.65 <= seen["1.0"] / 300 <= 0.92, seen

    write_routes(routes, _routes(server, second_version, (0, 100)))
    assert _versions_of(router, 40) == {"1.1": 40}
    assert router.process is not None and router.process.poll() is None
    assert router.get("/ready").json()["versions"] == ["1.1"]


def test_router_copies_requests_to_the_shadow(
    router: ServerProcess, server: ServerProcess, second_version: ServerProcess
) -> None:
    shadow_log = second_version.folder / "requests.jsonl"
    write_routes(router.folder / "routes.json", _routes(server, second_version, (100, 0), True))
    since = time.time()
    answers = [router.post("/predict", {KEY: key}) for key in ("r1", "r2", "r3", "r2")]
    # Clients get the served version's answer only.
    assert {a.headers["x-lykeion-version"] for a in answers} == {"1.0"}
    wait_for(lambda: len(log_lines_since(shadow_log, since)) >= 4, 10, "the shadow's log")
    copies = rows_of(log_lines_since(shadow_log, since))
    assert sorted(c["keys"][KEY] for c in copies) == ["r1", "r2", "r2", "r3"]
    assert {c["version"] for c in copies} == {"1.1"}


# -- 8. the local executor's endpoints ----------------------------------------------------


def _serve(endpoints: LocalEndpoints, endpoint: Endpoint) -> EndpointStatus:
    return asyncio.run(endpoints.serve(endpoint))


def _serve_until_available(endpoints: LocalEndpoints, endpoint: Endpoint) -> EndpointStatus:
    def available() -> EndpointStatus | None:
        status = _serve(endpoints, endpoint)
        assert not status.crashed, status.messages
        return status if status.url and all(status.available.values()) else None

    status: EndpointStatus = wait_for(available, 90, f"endpoint {endpoint.name} to serve")
    return status


def _pids(folder: Path) -> tuple[int, int]:
    """The wrapper's pid (its process group) and the server's own, from the folder."""
    wrapper = Process(folder).pid()
    assert wrapper is not None, f"no pid in {folder}"
    return wrapper, int(json.loads((folder / "endpoint.json").read_text())["pid"])


def _stopped(pid: int) -> Callable[[], bool]:
    return lambda: not alive(pid)


def test_local_endpoints_serve_idempotently_restart_on_change_and_unserve(
    served_model: ServedModel,
    tmp_path: Path,
) -> None:
    endpoints = LocalEndpoints(tmp_path / "state")
    version = VersionServer(
        "1.0", f"{NAME}-1-0", ServerConfig.model_validate(served_model.config())
    )
    endpoint = Endpoint(
        name=NAME, namespace=NAMESPACE, backend="lykeion", servers=(version,),
        weights={"1.0": 100}, python=sys.executable,
    )  # fmt: skip
    base = endpoints.folder(NAMESPACE, NAME)
    server_folder, router_folder = base / version.name, base / "router"
    try:
        status = _serve_until_available(endpoints, endpoint)
        assert status.available == {"1.0": True} and status.ready_replicas == 1
        assert status.url is not None
        answer = httpx.post(f"{status.url}/predict", json={KEY: "r1"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-lykeion-version"] == "1.0"
        assert same(answer.json()["predictions"], served_model.expected(stored("r1")))

        # The same Endpoint again: nothing restarts.
        server_pids, router_pids = _pids(server_folder), _pids(router_folder)
        again = _serve(endpoints, endpoint)
        assert again.url == status.url and again.available == {"1.0": True}
        assert (_pids(server_folder), _pids(router_folder)) == (server_pids, router_pids)
        assert all(alive(pid) for pid in (*server_pids, *router_pids))

        # A changed server config restarts that server, and only that one.
        changed = VersionServer(
            "1.0",
            version.name,
            ServerConfig.model_validate(served_model.config(output="probability")),
        )
        endpoint = dataclasses.replace(endpoint, servers=(changed,))
        restarted = _serve_until_available(endpoints, endpoint)
        new_server_pids = _pids(server_folder)
        assert new_server_pids[0] != server_pids[0] and new_server_pids[1] != server_pids[1]
        assert _pids(router_folder) == router_pids
        assert restarted.url == status.url
        wait_for(_stopped(server_pids[1]), 15, "the old server to exit")
        seldon = httpx.post(
            f"{restarted.url}/api/v1.0/predictions", json={"jsonData": {KEY: ["r1"]}}, timeout=30
        )
        assert seldon.status_code == 200, seldon.text
        assert seldon.json()["data"]["names"] == ["probability_0", "probability_1"]

        asyncio.run(endpoints.unserve(NAMESPACE, NAME))
        for pid in (*new_server_pids, *router_pids):
            wait_for(_stopped(pid), 15, f"process {pid} to stop")
        assert not base.exists()
    finally:
        asyncio.run(endpoints.unserve(NAMESPACE, NAME))


# -- 9. clients nobody here wrote ---------------------------------------------------------


@pytest.fixture(scope="module")
def clients_python() -> str:
    """The serving-clients venv's python; building it may take minutes the first time."""
    script = ROOT / "scripts" / "install-serving-clients.sh"
    try:
        done = subprocess.run(
            [str(script)], capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"{script} did not run: {error}")
    python = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not Path(python).is_file():
        pytest.fail(
            f"{script} exited {done.returncode} without a python "
            f"(stdout {done.stdout!r}); stderr:\n{done.stderr[-3000:]}"
        )
    return python


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="plain-paths-json-input"),
        pytest.param(
            ["--namespace", NAMESPACE, "--deployment", NAME, "--v2-binary-input"],
            id="gateway-path-binary-input",
        ),
        pytest.param(["--deployment", NAME], id="gateway-path-without-namespace"),
    ],
)
def test_seldon_and_triton_clients_get_the_plain_endpoints_predictions(
    clients_python: str, server: ServerProcess, extra: list[str]
) -> None:
    keys = ["r1", "r2", "r3"]
    plain = server.post("/predict", {"keys": [{KEY: k} for k in keys]})
    assert plain.status_code == 200, plain.text
    expected = plain.json()["predictions"]

    done = subprocess.run(
        [clients_python, str(ROOT / "tests" / "compat" / "serving_clients.py"),
         "--url", server.url, "--model", NAME, "--key-name", KEY, "--keys", ",".join(keys),
         "--seldon-json-data", *extra],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    for seldon in (result["seldon"], result["seldon_json_data"]):
        assert seldon["names"] == ["score_0", "score_1"]
        assert same(seldon["values"], expected)
        assert seldon["meta"]["tags"]["lykeion.version"] == "1.0"
    v2 = result["v2"]
    assert (v2["live"], v2["server_ready"], v2["ready"]) == (True, True, True)
    assert (v2["model_name"], v2["model_version"]) == (NAME, "1.0")
    assert same(v2["outputs"]["score"], expected)
    metadata = v2["metadata"]
    assert metadata["name"] == NAME and metadata["versions"] == ["1.0"]
    assert [i["name"] for i in metadata["inputs"]] == [KEY]
    assert [o["name"] for o in metadata["outputs"]] == ["score"]
    assert metadata["parameters"]["features"] == ["rider.age", "rider.avg_fare"]
