"""The three request bodies -> typed rows of keys, every refusal a BadRequest naming the
input, the element and what was expected; the answers' and errors' shapes."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest

from lykeion.serving import protocols
from lykeion.serving.enrich import BadRequest, Enriched
from lykeion.serving.model import Prediction

ROWS = [{"rider_id": "r1"}, {"rider_id": "r2"}]
STRING = {"rider_id": "string"}
INT64 = {"rider_id": "int64"}
TOO_BIG = 2**63


def v2(*tensors: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": list(tensors)}


def tensor(data: list[Any], shape: list[int] | None = None, datatype: str = "BYTES",
           name: str = "rider_id") -> dict[str, Any]:  # fmt: skip
    return {"name": name, "shape": [len(data)] if shape is None else shape,
            "datatype": datatype, "data": data}  # fmt: skip


def binary(header: dict[str, Any], *parts: bytes) -> tuple[bytes, str]:
    head = orjson.dumps(header)
    return head + b"".join(parts), str(len(head))


def strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


# -- plain ---------------------------------------------------------------------------------


def test_plain_bodies() -> None:
    assert protocols.plain_rows({"rider_id": "r1"}, STRING) == ROWS[:1]
    assert protocols.plain_rows({"keys": ROWS}, STRING) == ROWS
    assert protocols.plain_rows({"keys": [{"rider_id": "7"}]}, INT64) == [{"rider_id": 7}]
    with pytest.raises(BadRequest, match="list of objects"):
        protocols.plain_rows({"keys": "r1"}, STRING)
    with pytest.raises(BadRequest, match="JSON object"):
        protocols.plain_rows(["r1"], STRING)
    with pytest.raises(BadRequest, match=r"keys\[1\] must be a JSON object"):
        protocols.plain_rows({"keys": [{"rider_id": "r1"}, "r2"]}, STRING)
    with pytest.raises(BadRequest, match=r"keys\[0\]: driver_id not an entity key .*rider_id"):
        protocols.plain_rows({"keys": [{"rider_id": "r1", "driver_id": "d1"}]}, STRING)
    with pytest.raises(BadRequest, match=r"unknown field.*extra"):
        protocols.plain_rows({"keys": ROWS, "extra": 1}, STRING)
    with pytest.raises(BadRequest, match="no rows"):
        protocols.plain_rows({"keys": []}, STRING)


# -- keys, typed by the entity's declared type, on every protocol ----------------------------

# (value, accepted key or None when refused) for int64 keys, as issue 11 reports them.
INT64_CASES = [
    ("--5", None), ("²", None), ("٣", None), (" 5", None), ("5_000", None), ("+5", None),
    ("", None), (str(TOO_BIG), None), (TOO_BIG, None), (1e19, None), (2.0**63, None),
    (1.5, None), (True, None), (None, None), ([5], None),
    ("-9223372036854775808", -(2**63)), (TOO_BIG - 1, TOO_BIG - 1), (42.0, 42), ("007", 7),
    (-5, -5), ("-5", -5),
]  # fmt: skip


@pytest.mark.parametrize(("value", "key"), INT64_CASES, ids=[repr(c[0]) for c in INT64_CASES])
def test_int64_keys_are_parsed_with_range_checks_on_every_protocol(value: Any, key: Any) -> None:
    bodies = [
        ("plain", lambda: protocols.plain_rows({"rider_id": value}, INT64), "rider_id"),
        ("plain-keys", lambda: protocols.plain_rows({"keys": [{"rider_id": value}]}, INT64),
         r"keys\[0\]\.rider_id"),
        ("ndarray", lambda: protocols.seldon_rows(
            {"data": {"names": ["rider_id"], "ndarray": [[value]]}}, INT64),
         r"data\.ndarray\[0\]\[0\] \(rider_id\)"),
        ("jsonData", lambda: protocols.seldon_rows({"jsonData": {"rider_id": [value]}}, INT64),
         r"jsonData\.rider_id\[0\]"),
    ]  # fmt: skip
    if isinstance(value, str):
        bodies.append(("v2", lambda: protocols.v2_rows(v2(tensor([value])), INT64),
                       "input rider_id, element 0"))  # fmt: skip
    for protocol, parse, where in bodies:
        if key is None:
            with pytest.raises(BadRequest, match=where) as refused:
                parse()
            assert "expected an int64" in str(refused.value), protocol
        else:
            assert parse() == [{"rider_id": key}], protocol


def test_string_keys_refuse_empty_text_and_take_integers_as_text() -> None:
    assert protocols.plain_rows({"rider_id": 42}, STRING) == [{"rider_id": "42"}]
    assert protocols.plain_rows({"rider_id": 42.0}, STRING) == [{"rider_id": "42"}]
    for value in ("", None, True, 1.5, {"a": 1}):
        with pytest.raises(BadRequest, match="expected a non-empty string"):
            protocols.plain_rows({"rider_id": value}, STRING)


# -- Seldon v1 -----------------------------------------------------------------------------


def test_seldon_bodies() -> None:
    ndarray = {"meta": {}, "data": {"names": ["rider_id"], "ndarray": [["r1"], ["r2"]]}}
    assert protocols.seldon_rows(ndarray, STRING) == ROWS
    assert protocols.seldon_rows({"jsonData": {"rider_id": ["r1", "r2"]}}, STRING) == ROWS
    assert protocols.seldon_rows({"strData": '{"rider_id": ["r1", "r2"]}'}, STRING) == ROWS
    tensor_body = {
        "data": {"names": ["rider_id"], "tensor": {"shape": [2, 1], "values": [1.0, 2.0]}}
    }
    assert protocols.seldon_rows(tensor_body, INT64) == [{"rider_id": 1}, {"rider_id": 2}]
    assert protocols.seldon_rows(tensor_body, STRING) == [{"rider_id": "1"}, {"rider_id": "2"}]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"data": {"names": ["rider_id", "b"], "ndarray": [["r1"]]}}, "b not an entity key"),
        (
            {"data": {"names": ["rider_id"], "ndarray": [["r1", "r2"]]}},
            r"ndarray\[0\] must be a list of 1",
        ),
        (
            {"data": {"names": ["rider_id", "rider_id"], "ndarray": [["r1", "r1"]]}},
            "names a column twice",
        ),
        ({"data": {"names": [], "ndarray": []}}, "data.names"),
        ({"data": {"names": ["rider_id"]}}, "exactly one of"),
        ({"data": {"names": ["rider_id"], "ndarray": [["r1"]], "tensor": {}}}, "exactly one of"),
        ({"data": {"names": ["rider_id"], "tftensor": {}}}, "unknown field.*tftensor"),
        (
            {"data": {"names": ["rider_id"], "tensor": {"shape": [1, 2], "values": ["r1", "r2"]}}},
            "2 column",
        ),
        (
            {"data": {"names": ["rider_id"], "tensor": {"shape": [2, 1], "values": ["r1"]}}},
            "product",
        ),
        (
            {"data": {"names": ["rider_id"], "ndarray": [[["r1"]]]}},
            r"ndarray\[0\]\[0\].*non-empty string",
        ),
        ({"jsonData": {"rider_id": ["r1"]}, "data": {}}, "exactly one of"),
        (
            {"jsonData": {"rider_id": ["r1", "r2"], "driver_id": ["d1"]}},
            "driver_id not an entity key",
        ),
        ({"jsonData": {}}, "missing entity key"),
        ({"strData": "r1"}, "strData.*JSON text"),
        ({"strData": 5}, "strData.*string"),
        ({"binData": "cjE="}, "unknown field.*binData"),
        ({"strData": "{}", "meta": 3}, "meta"),
    ],
)
def test_seldon_refusals_name_what_is_wrong(body: dict[str, Any], says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        protocols.seldon_rows(body, STRING)


# -- V2 ------------------------------------------------------------------------------------


def test_v2_bodies_json() -> None:
    assert protocols.v2_rows(v2(tensor(["r1", "r2"])), STRING) == ROWS
    # Nested (natural) and flat layouts are the same tensor.
    assert protocols.v2_rows(v2(tensor([["r1"], ["r2"]], [2, 1])), STRING) == ROWS
    assert protocols.v2_rows({"id": "7", "parameters": {}, "outputs": [{"name": "score"}],
                              **v2(tensor(["r1", "r2"]))}, STRING) == ROWS  # fmt: skip


@pytest.mark.parametrize("datatype", ["BYTES", "INT64", "INT32", "INT16", "INT8", "UINT8",
                                      "UINT16", "UINT32", "UINT64"])  # fmt: skip
def test_v2_key_tensors_take_every_datatype_that_carries_an_int64(datatype: str) -> None:
    data: list[Any] = ["7", "12"] if datatype == "BYTES" else [7, 12]
    assert protocols.v2_rows(v2(tensor(data, datatype=datatype)), INT64) == [
        {"rider_id": 7}, {"rider_id": 12}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            v2(tensor(["r1", "r2"], [1])),
            r"input rider_id: shape \[1\] holds 1 element\(s\), data has 2",
        ),
        (v2(tensor(["r1"], [3])), r"shape \[3\] holds 3 element\(s\), data has 1"),
        (v2(tensor([["r1", "r2"]], [2])), "nests deeper than its shape"),
        (v2(tensor(["r1", 5], datatype="BYTES")), r"element 1: BYTES needs a string, got 5"),
        (v2(tensor(["r1"], datatype="FP32")), r"element 0: FP32 needs a number, got 'r1'"),
        (v2(tensor([1.5], datatype="FP64")), "a key tensor must be BYTES, INT8"),
        (v2(tensor([True], datatype="BOOL")), "a key tensor must be"),
        (v2(tensor(["r1"], datatype="STRING")), "unknown datatype 'STRING'"),
        (v2(tensor([300], datatype="UINT8")), r"element 0: UINT8 needs an integer from 0 to 255"),
        (v2(tensor([-1], datatype="UINT64")), "UINT64 needs an integer from 0"),
        (
            v2(tensor([TOO_BIG], datatype="UINT64")),
            r"input rider_id, element 0 \(rider_id\): expected an int64",
        ),
        (v2(tensor([True], datatype="INT64")), "INT64 needs an integer"),
        (v2(tensor(["r1"]), tensor(["r2"])), "input rider_id is given twice"),
        (v2(tensor(["d1"], name="driver_id")), "input driver_id is not an entity key.*rider_id"),
        (v2(tensor(["r1"], [-1])), "shape must be a list of non-negative integers"),
        (v2(tensor(["r1"], [1] * 40)), "at most 32"),
        (v2({**tensor(["r1"]), "extra": 1}), "unknown field.*extra"),
        (v2({**tensor(["r1"]), "parameters": [8]}), "parameters must be an object"),
        (v2({"name": "rider_id", "shape": [1], "datatype": "BYTES"}), "data must be a list"),
        (v2("r1"), r"inputs\[0\] must be an object"),
        ({"inputs": []}, "non-empty list"),
        ({"inputs": [tensor(["r1"])], "id": 5}, '"id" must be a string'),
        ({"inputs": [tensor(["r1"])], "outputs": ["score"]}, '"outputs" must be a list'),
        ({"inputs": [tensor(["r1"])], "model": "x"}, "unknown field"),
    ],
)
def test_v2_refusals_name_the_input_the_element_and_what_was_expected(
    body: dict[str, Any], says: str
) -> None:
    with pytest.raises(BadRequest, match=says):
        protocols.v2_rows(body, INT64 if "int64" in says else STRING)


def test_v2_key_tensors_of_one_length() -> None:
    both = {"rider_id": "string", "city": "string"}
    with pytest.raises(BadRequest, match="same number of elements"):
        protocols.v2_rows(v2(tensor(["r1"]), tensor(["a", "b"], name="city")), both)
    with pytest.raises(BadRequest, match=r"missing entity key.*city"):
        protocols.v2_rows(v2(tensor(["r1"])), both)


# -- V2 binary tensor extension ------------------------------------------------------------


def _binary_input(size: int, shape: list[int], datatype: str = "BYTES") -> dict[str, Any]:
    return {"name": "rider_id", "shape": shape, "datatype": datatype,
            "parameters": {"binary_data_size": size}}  # fmt: skip


def test_v2_binary_bytes_and_integers_decode() -> None:
    raw = strings(b"r1", b"r2")
    body, length = binary(v2(_binary_input(len(raw), [2])), raw)
    assert protocols.v2_rows(protocols.v2_binary_body(body, length), STRING) == ROWS
    numbers = struct.pack("<2q", 7, -3)
    body, length = binary(v2(_binary_input(16, [2], "INT64")), numbers)
    decoded = protocols.v2_binary_body(body, length)
    assert protocols.v2_rows(decoded, INT64) == [{"rider_id": 7}, {"rider_id": -3}]
    body, length = binary(v2(_binary_input(8, [2], "UINT32")), struct.pack("<2I", 1, 2))
    assert protocols.v2_rows(protocols.v2_binary_body(body, length), INT64) == [
        {"rider_id": 1}, {"rider_id": 2}
    ]  # fmt: skip
    # An input without binary_data_size keeps its JSON data next to a binary one.
    city = tensor(["c1", "c2"], name="city")
    body, length = binary(v2(_binary_input(len(raw), [2]), city), raw)
    assert protocols.v2_rows(protocols.v2_binary_body(body, length),
                             {"rider_id": "string", "city": "string"}) == [
        {"rider_id": "r1", "city": "c1"}, {"rider_id": "r2", "city": "c2"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "length", "says"),
    [
        (*binary(v2(_binary_input(6, [1])), strings(b"r1", b"r2")), "6 byte.*after the header"),
        (
            *binary(v2(_binary_input(14, [2])), strings(b"r1", b"r2")),
            "runs past the end of the body",
        ),
        (
            *binary(v2(_binary_input(6, [2])), strings(b"r1")),
            r"shape holds 2 element\(s\), the binary part has 1",
        ),
        (
            *binary(v2(_binary_input(8, [2])), struct.pack("<I", 9) + b"r1r2"),
            "length 9 runs past the end",
        ),
        (
            *binary(v2(_binary_input(7, [2])), strings(b"r1") + b"\x01"),
            "4-byte length was expected",
        ),
        (
            *binary(v2(_binary_input(6, [1])), strings(b"\xff\xfe")),
            "element 0: the bytes are not UTF-8",
        ),
        (
            *binary(v2(_binary_input(12, [2], "INT64")), b"\x00" * 12),
            r"2 INT64 element\(s\) of 8 byte\(s\), binary_data_size is 12",
        ),
        (*binary(v2(_binary_input(-1, [1])), b""), "binary_data_size must be a byte count"),
        (*binary(v2(_binary_input(True, [1])), b"\x00"), "binary_data_size must be a byte count"),
        (
            *binary(v2({**_binary_input(6, [1]), "data": ["r1"]}), strings(b"r1")),
            "either data or binary_data_size",
        ),
        (*binary(v2(_binary_input(1, [1], "STRING")), b"\x00"), "unknown datatype"),
        (*binary(v2(_binary_input(2, [2], "BOOL")), b"\x00\x07"), "BOOL elements must be"),
        (b'{"inputs": []}', "99", "is 99 but the body has 14"),
        (b'{"inputs": []}', "-3", "decimal byte count"),
        (b'{"inputs": []}', "١٤", "decimal byte count"),
        (b'{"inputs": [', "12", "not JSON"),
        (b"[1, 2]", "6", "must be a JSON object"),
        (*binary(v2("r1")), r"inputs\[0\] must be an object"),
        (
            *binary(v2({**_binary_input(6, [1]), "parameters": [8]}), strings(b"r1")),
            "parameters must be an object",
        ),
    ],
)
def test_v2_binary_sizes_and_lengths_are_checked_against_the_body(
    raw: bytes, length: str, says: str
) -> None:
    with pytest.raises(BadRequest, match=says):
        protocols.v2_rows(protocols.v2_binary_body(raw, length), STRING)


def test_too_many_rows_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="at most"):
        protocols.plain_rows({"keys": [{"k": i} for i in range(protocols.MAX_ROWS + 1)]},
                             {"k": "int64"})  # fmt: skip
    many = [f"r{i}" for i in range(protocols.MAX_ROWS + 1)]
    with pytest.raises(BadRequest, match="at most"):
        protocols.v2_rows(v2(tensor(many)), STRING)


# -- answers and errors --------------------------------------------------------------------


def test_answers_carry_version_shape_and_explanations() -> None:
    prediction = Prediction([[0.2, 0.8], [0.6, 0.4]], "FP64", [2, 2])
    enriched = Enriched({"rider__age": [30, None]}, [[], []], [[], ["rider.age"]])
    answer = protocols.v2_answer("fwd", "1.0", "score", prediction, enriched, True, "abc")
    assert answer["outputs"] == [
        {"name": "score", "shape": [2, 2], "datatype": "FP64", "data": [0.2, 0.8, 0.6, 0.4]}
    ]
    assert answer["id"] == "abc"
    assert answer["parameters"]["features"] == [{"rider__age": 30}, {"rider__age": None}]
    seldon = protocols.seldon_answer("score", "1.0", prediction, enriched, False)
    assert seldon["data"]["names"] == ["score_0", "score_1"]
    assert set(seldon["meta"]) == {"tags"}  # SeldonClient accepts only its own meta keys
    plain = protocols.plain_answer("fwd", "1.0", prediction, enriched, False)
    assert plain["defaulted"] == [[], ["rider.age"]] and "features" not in plain


def test_errors_are_each_protocols_own_error_object() -> None:
    assert protocols.error_body("v2", 400, "bad") == {"error": "bad"}
    assert protocols.error_body("plain", 422, "gone", missing=[["a"]]) == {
        "error": "gone", "missing": [["a"]]
    }  # fmt: skip
    assert protocols.error_body("seldon", 400, "bad") == {
        "status": {"code": 400, "info": "bad", "reason": "MICROSERVICE_BAD_DATA",
                   "status": "FAILURE"}
    }  # fmt: skip
    assert protocols.error_body("seldon", 422, "gone", missing=[["a"]])["meta"] == {
        "tags": {"missing": [["a"]]}
    }
