"""The three request bodies -> rows of keys, and the answers' shapes."""

from __future__ import annotations

import struct

import orjson
import pytest

from lykeion.serving import protocols
from lykeion.serving.enrich import BadRequest, Enriched
from lykeion.serving.model import Prediction

ROWS = [{"rider_id": "r1"}, {"rider_id": "r2"}]


def test_plain_bodies() -> None:
    assert protocols.plain_rows({"rider_id": "r1"}) == ROWS[:1]
    assert protocols.plain_rows({"keys": ROWS}) == ROWS
    with pytest.raises(BadRequest, match="list of objects"):
        protocols.plain_rows({"keys": "r1"})
    with pytest.raises(BadRequest, match="JSON object"):
        protocols.plain_rows(["r1"])


def test_seldon_bodies() -> None:
    ndarray = {"meta": {}, "data": {"names": ["rider_id"], "ndarray": [["r1"], ["r2"]]}}
    assert protocols.seldon_rows(ndarray) == ROWS
    assert protocols.seldon_rows({"jsonData": {"rider_id": ["r1", "r2"]}}) == ROWS
    tensor = {"data": {"names": ["rider_id"], "tensor": {"shape": [2, 1], "values": [1.0, 2.0]}}}
    assert protocols.seldon_rows(tensor) == [{"rider_id": 1.0}, {"rider_id": 2.0}]
    with pytest.raises(BadRequest, match="one value per name"):
        protocols.seldon_rows({"data": {"names": ["a", "b"], "ndarray": [["r1"]]}})
    with pytest.raises(BadRequest, match='expected "data"'):
        protocols.seldon_rows({"strData": "x"})


def test_v2_bodies_json_and_binary() -> None:
    body = {
        "inputs": [{"name": "rider_id", "shape": [2], "datatype": "BYTES", "data": ["r1", "r2"]}]
    }
    assert protocols.v2_rows(body) == ROWS
    assert protocols.v2_rows({"inputs": [{"name": "rider_id", "data": [["r1"], ["r2"]]}]}) == ROWS
    with pytest.raises(BadRequest, match="same number of values"):
        protocols.v2_rows({"inputs": [{"name": "a", "data": [1]}, {"name": "b", "data": [1, 2]}]})
    # The binary tensor extension: JSON header, then length-prefixed strings.
    raw = b"".join(struct.pack("<I", len(k)) + k for k in (b"r1", b"r2"))
    header = orjson.dumps(
        {"inputs": [{"name": "rider_id", "shape": [2], "datatype": "BYTES",
                     "parameters": {"binary_data_size": len(raw)}}]}
    )  # fmt: skip
    decoded = protocols.v2_binary_body(header + raw, str(len(header)))
    assert protocols.v2_rows(decoded) == ROWS


def test_too_many_rows_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="at most"):
        protocols.plain_rows({"keys": [{"k": i} for i in range(protocols.MAX_ROWS + 1)]})


def test_answers_carry_version_shape_and_explanations() -> None:
    prediction = Prediction([[0.2, 0.8], [0.6, 0.4]], "FP64", [2, 2])
    enriched = Enriched({"rider__age": [30, None]}, [[], []], [[], ["rider.age"]])
    v2 = protocols.v2_answer("fwd", "1.0", "score", prediction, enriched, True, "abc")
    assert v2["outputs"] == [
        {"name": "score", "shape": [2, 2], "datatype": "FP64", "data": [0.2, 0.8, 0.6, 0.4]}
    ]
    assert v2["id"] == "abc"
    assert v2["parameters"]["features"] == [{"rider__age": 30}, {"rider__age": None}]
    seldon = protocols.seldon_answer("score", "1.0", prediction, enriched, False)
    assert seldon["data"]["names"] == ["score_0", "score_1"]
    assert set(seldon["meta"]) == {"tags"}  # SeldonClient accepts only its own meta keys
    plain = protocols.plain_answer("fwd", "1.0", prediction, enriched, False)
    assert plain["defaulted"] == [[], ["rider.age"]] and "features" not in plain
