"""Request bodies of the three protocols -> typed rows of entity keys, and answers back.

- plain:     POST /predict  `{"rider_id": "r42"}` or `{"keys": [{"rider_id": "r1"}, ...]}`
- Seldon v1: POST /api/v1.0/predictions  `{"data": {"names": [...], "ndarray": [[...]]}}`
             (also `data.tensor`, `jsonData`, and `strData` holding jsonData as JSON text)
- V2 (Open Inference Protocol): POST /v2/models/<name>/infer, one input per entity key,
  as JSON or with the binary tensor extension.

Each body is checked whole before any work is done: its structure (unknown fields are
refused), V2 shapes against the number of elements, datatypes against the values, unique
names, then every key against its entity's declared type (`lykeion.features.keys`). A
refusal is a `BadRequest` whose message names the input, the element and what was
expected; the app answers it with the protocol's own error object (`error_body`).
Sources: the Open Inference Protocol's text and OpenAPI document
(`third_party/specs/`), Triton's binary tensor data extension, Seldon Core v1's
SeldonMessage.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from lykeion.features.keys import InvalidKey, parse_key
from lykeion.serving.enrich import BadRequest, Enriched
from lykeion.serving.model import Prediction

MAX_ROWS = 1000
KeyTypes = Mapping[str, str]
"""Entity key name -> its declared key type (`string`, `int64`), in the model's order."""
Row = dict[str, str | int]

# -- the V2 datatypes: (struct format of one element, low, high) -------------------------

_INTEGERS: Final = {
    "INT8": ("b", -(2**7), 2**7 - 1),
    "INT16": ("h", -(2**15), 2**15 - 1),
    "INT32": ("i", -(2**31), 2**31 - 1),
    "INT64": ("q", -(2**63), 2**63 - 1),
    "UINT8": ("B", 0, 2**8 - 1),
    "UINT16": ("H", 0, 2**16 - 1),
    "UINT32": ("I", 0, 2**32 - 1),
    "UINT64": ("Q", 0, 2**64 - 1),
}
_FLOATS: Final = {"FP16": "e", "FP32": "f", "FP64": "d"}
DATATYPES: Final = ("BOOL", *_INTEGERS, *_FLOATS, "BF16", "BYTES")
KEY_DATATYPES: Final = ("BYTES", *_INTEGERS)
"""Datatypes a key tensor may have: text, or integers (range-checked by the key type)."""


def _names(items: Iterable[str]) -> str:
    return ", ".join(items) or "none"


def _checked(rows: list[Row]) -> list[Row]:
    if not rows:
        raise BadRequest("no rows: send at least one set of entity keys")
    if len(rows) > MAX_ROWS:
        raise BadRequest(f"{len(rows)} rows in one request; at most {MAX_ROWS}")
    return rows


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


def _only(value: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = [name for name in value if name not in allowed]
    if unknown:
        raise BadRequest(
            f"{where}: unknown field(s) {_names(unknown)} (allowed: {_names(allowed)})"
        )


def _key(key_types: KeyTypes, name: str, value: Any, where: str) -> str | int:
    try:
        return parse_key(key_types[name], value)
    except InvalidKey as error:
        raise BadRequest(f"{where} ({name}): {error}") from None


def _key_names(key_types: KeyTypes, names: Iterable[str], where: str) -> None:
    """Every entity key of the model is named, and nothing else."""
    given = list(names)
    problems = []
    missing = [n for n in key_types if n not in given]
    if missing:
        problems.append(f"missing entity key(s) {_names(missing)}")
    unknown = [n for n in given if n not in key_types]
    if unknown:
        problems.append(f"{_names(unknown)} not an entity key of this model")
    if problems:
        raise BadRequest(f"{where}: {'; '.join(problems)} (it takes {_names(key_types)})")


# -- plain ---------------------------------------------------------------------------------


def plain_rows(body: Any, key_types: KeyTypes) -> list[Row]:
    """`{"keys": [{key: value, ...}, ...]}` or one object of keys -> typed rows."""
    body = _object(body, "the body")
    if "keys" in body and "keys" not in key_types:
        _only(body, ["keys"], "the body")
        keys = body["keys"]
        if not isinstance(keys, list):
            raise BadRequest('"keys" must be a list of objects of entity keys')
        listed = [(f"keys[{i}]", row) for i, row in enumerate(keys)]
    else:
        listed = [("the body", body)]
    if len(listed) > MAX_ROWS:
        raise BadRequest(f"{len(listed)} rows in one request; at most {MAX_ROWS}")
    rows = []
    for where, row in listed:
        row = _object(row, where)
        _key_names(key_types, row, where)
        rows.append({name: _key(key_types, name, row[name], f"{where}.{name}")
                     for name in key_types})  # fmt: skip
    return _checked(rows)


# -- Seldon v1 -----------------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float)


def seldon_rows(body: Any, key_types: KeyTypes) -> list[Row]:
    """A SeldonMessage -> typed rows: `data` (`names` with `ndarray` or `tensor`),
    `jsonData` (key -> value or list of values) or `strData` (jsonData as JSON text)."""
    body = _object(body, "the body")
    _only(body, ["meta", "data", "jsonData", "strData"], "the SeldonMessage")
    if "meta" in body and not isinstance(body["meta"], dict | None):
        raise BadRequest('"meta" must be an object')
    payloads = [name for name in ("data", "jsonData", "strData") if name in body]
    if len(payloads) != 1:
        raise BadRequest(
            'expected exactly one of "data" (names with ndarray or tensor), "jsonData" '
            f'or "strData"; got {_names(payloads)}'
        )
    if "jsonData" in body:
        return _json_data(body["jsonData"], key_types, "jsonData")
    if "strData" in body:
        text = body["strData"]
        if not isinstance(text, str):
            raise BadRequest('"strData" must be a string (JSON text of entity keys)')
        try:
            decoded = json.loads(text)
        except ValueError:
            raise BadRequest('"strData" must be JSON text of an object of entity keys') from None
        return _json_data(decoded, key_types, "strData")
    data = _object(body["data"], '"data"')
    _only(data, ["names", "ndarray", "tensor"], '"data"')
    names = data.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise BadRequest('"data.names" must list the entity keys of the columns')
    if len(set(names)) != len(names):
        raise BadRequest(f'"data.names" names a column twice: {names}')
    _key_names(key_types, names, "data.names")
    forms = [name for name in ("ndarray", "tensor") if name in data]
    if len(forms) != 1:
        raise BadRequest('"data" must hold exactly one of "ndarray" or "tensor"')
    cells: list[tuple[str, list[Any]]]
    if "ndarray" in data:
        matrix = data["ndarray"]
        if not isinstance(matrix, list):
            raise BadRequest('"data.ndarray" must be a list of rows')
        if matrix and not isinstance(matrix[0], list):
            matrix = [matrix]  # one row given flat
        cells = []
        for index, row in enumerate(matrix):
            if not isinstance(row, list) or len(row) != len(names):
                raise BadRequest(
                    f"data.ndarray[{index}] must be a list of {len(names)} value(s), one per "
                    "name in data.names"
                )
            cells.append((f"data.ndarray[{index}]", row))
    else:
        tensor = _object(data["tensor"], '"data.tensor"')
        _only(tensor, ["shape", "values"], '"data.tensor"')
        values, shape = tensor.get("values"), tensor.get("shape")
        if (
            not isinstance(values, list)
            or not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
            or shape[0] * shape[1] != len(values)
        ):
            raise BadRequest(
                '"data.tensor" needs "values" and a 2-dimensional "shape" of positive '
                "sizes whose product is the number of values"
            )
        if shape[1] != len(names):
            raise BadRequest(
                f"data.tensor has {shape[1]} column(s) but data.names names {len(names)}"
            )
        width = shape[1]
        cells = [
            (f"data.tensor.values[{i}:{i + width}]", values[i : i + width])
            for i in range(0, len(values), width)
        ]
    if len(cells) > MAX_ROWS:
        raise BadRequest(f"{len(cells)} rows in one request; at most {MAX_ROWS}")
    rows = []
    for where, row in cells:
        typed: Row = {}
        for column, (name, value) in enumerate(zip(names, row, strict=True)):
            typed[name] = _key(key_types, name, value, f"{where}[{column}]")
        rows.append(typed)
    return _checked(rows)


def _json_data(value: Any, key_types: KeyTypes, where: str) -> list[Row]:
    columns = _object(value, f'"{where}"')
    _key_names(key_types, columns, where)
    listed = {k: v if isinstance(v, list) else [v] for k, v in columns.items()}
    lengths = {len(v) for v in listed.values()}
    if len(lengths) != 1:
        raise BadRequest(f"{where}: every entity key needs the same number of values")
    count = lengths.pop()
    if count > MAX_ROWS:
        raise BadRequest(f"{count} rows in one request; at most {MAX_ROWS}")
    return _checked(
        [
            {name: _key(key_types, name, listed[name][i], f"{where}.{name}[{i}]")
             for name in key_types}
            for i in range(count)
        ]
    )  # fmt: skip


# -- V2 / Open Inference Protocol ---------------------------------------------------------

MAX_DIMENSIONS = 32
_REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")
_TENSOR_FIELDS = ("name", "shape", "datatype", "parameters", "data")


def _input_name(tensor: Any, index: int) -> str:
    if not isinstance(tensor, dict):
        raise BadRequest(f"inputs[{index}] must be an object (name, shape, datatype, data)")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f'inputs[{index}] needs a non-empty string "name"')
    return name


def _parameters(tensor: Mapping[str, Any], where: str) -> dict[str, Any]:
    parameters = tensor.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}: parameters must be an object")
    return parameters


def _element_count(tensor: Mapping[str, Any], where: str) -> int:
    """The number of elements the tensor's `shape` declares (after checking it)."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise BadRequest(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMENSIONS:
        raise BadRequest(f"{where}: shape has {len(shape)} dimensions, at most {MAX_DIMENSIONS}")
    return math.prod(shape)


def _datatype(tensor: Mapping[str, Any], where: str) -> str:
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequest(
            f"{where}: unknown datatype {datatype!r} (the protocol's datatypes: "
            f"{_names(DATATYPES)})"
        )
    assert isinstance(datatype, str)
    return datatype


def _flatten(data: list[Any], dimensions: int, where: str) -> list[Any]:
    """Row-major elements of `data`, given flat or nested no deeper than the shape."""
    if all(not isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []

    def walk(items: list[Any], depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                if depth >= dimensions:
                    raise BadRequest(f"{where}: data nests deeper than its shape")
                walk(item, depth + 1)
            else:
                flat.append(item)

    walk(data, 1)
    return flat


def _expected(datatype: str) -> str:
    if datatype == "BOOL":
        return "a boolean"
    if datatype in _INTEGERS:
        _, low, high = _INTEGERS[datatype]
        return f"an integer from {low} to {high}"
    if datatype == "BYTES":
        return "a string"
    return "a number"


def _fits(datatype: str, value: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype in _INTEGERS:
        _, low, high = _INTEGERS[datatype]
        return isinstance(value, int) and low <= value <= high
    if datatype == "BYTES":
        return isinstance(value, str)
    return isinstance(value, int | float)


def _tensor_values(tensor: Mapping[str, Any], where: str) -> list[Any]:
    """The tensor's elements, checked against its shape and datatype."""
    _only(tensor, _TENSOR_FIELDS, where)
    count = _element_count(tensor, where)
    datatype = _datatype(tensor, where)
    _parameters(tensor, where)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"{where}: data must be a list of {count} element(s)")
    values = _flatten(data, max(len(tensor["shape"]), 1), where)
    if len(values) != count:
        raise BadRequest(
            f"{where}: shape {tensor['shape']} holds {count} element(s), data has {len(values)}"
        )
    for index, value in enumerate(values):
        if not _fits(datatype, value):
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise BadRequest(
                f"{where}, element {index}: {datatype} needs {_expected(datatype)}, got {shown}"
            )
    return values


def v2_rows(body: Any, key_types: KeyTypes) -> list[Row]:
    """An inference request -> typed rows: one input per entity key, all of one length."""
    body = _object(body, "the body")
    _only(body, _REQUEST_FIELDS, "the inference request")
    if body.get("id") is not None and not isinstance(body["id"], str):
        raise BadRequest('"id" must be a string')
    _parameters(body, "the inference request")
    outputs = body.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list)
        or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    ):
        raise BadRequest('"outputs" must be a list of objects with a "name"')
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest('"inputs" must be a non-empty list of tensors, one per entity key')
    columns: dict[str, list[Any]] = {}
    for index, tensor in enumerate(inputs):
        name = _input_name(tensor, index)
        where = f"input {name}"
        if name in columns:
            raise BadRequest(f"{where} is given twice; each input name must be unique")
        values = _tensor_values(tensor, where)
        if name not in key_types:
            raise BadRequest(
                f"{where} is not an entity key of this model (it takes {_names(key_types)})"
            )
        if tensor["datatype"] not in KEY_DATATYPES:
            raise BadRequest(
                f"{where}: a key tensor must be {_names(KEY_DATATYPES)}, not {tensor['datatype']}"
            )
        columns[name] = values
    _key_names(key_types, columns, "inputs")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise BadRequest(f"every key tensor needs the same number of elements, got {lengths}")
    count = next(iter(lengths.values()))
    if count > MAX_ROWS:
        raise BadRequest(f"{count} rows in one request; at most {MAX_ROWS}")
    return _checked(
        [
            {name: _key(key_types, name, columns[name][i], f"input {name}, element {i}")
             for name in key_types}
            for i in range(count)
        ]
    )  # fmt: skip


BINARY_HEADER = "inference-header-content-length"


def _binary_elements(datatype: str, part: bytes, count: int, where: str) -> list[Any]:
    """Decode one input's binary part: `count` little-endian elements of `datatype`;
    BYTES elements are a 4-byte little-endian length then that many bytes of UTF-8."""
    if datatype == "BYTES":
        values: list[Any] = []
        cursor = 0
        while cursor < len(part):
            if cursor + 4 > len(part):
                raise BadRequest(
                    f"{where}, element {len(values)}: {len(part) - cursor} byte(s) left where "
                    "a 4-byte length was expected"
                )
            size = int.from_bytes(part[cursor : cursor + 4], "little")
            start, cursor = cursor + 4, cursor + 4 + size
            if cursor > len(part):
                raise BadRequest(
                    f"{where}, element {len(values)}: length {size} runs past the end of its "
                    f"{len(part)}-byte part"
                )
            try:
                values.append(part[start:cursor].decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest(
                    f"{where}, element {len(values)}: the bytes are not UTF-8 text"
                ) from None
        if len(values) != count:
            raise BadRequest(
                f"{where}: shape holds {count} element(s), the binary part has {len(values)}"
            )
        return values
    if datatype in _INTEGERS:
        code = _INTEGERS[datatype][0]
    elif datatype in _FLOATS:
        code = _FLOATS[datatype]
    elif datatype == "BOOL":
        code = "B"
    else:  # BF16: the high half of an FP32
        code = "H"
    width = struct.calcsize(code)
    if len(part) != count * width:
        raise BadRequest(
            f"{where}: shape holds {count} {datatype} element(s) of {width} byte(s), "
            f"binary_data_size is {len(part)}"
        )
    values = list(struct.unpack(f"<{count}{code}", part))
    if datatype == "BOOL":
        if any(v > 1 for v in values):
            raise BadRequest(f"{where}: BOOL elements must be the bytes 0 or 1")
        return [bool(v) for v in values]
    if datatype == "BF16":
        return [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in values]
    return values


def v2_binary_body(raw: bytes, header_length: str) -> Any:
    """The V2 binary tensor extension (tritonclient's default): a JSON header of
    `header_length` bytes, then the raw bytes of each input that declares
    `parameters.binary_data_size`, in order. Each size is checked against the body and
    the shape, the parts must use the body exactly, and the inputs get `data` decoded
    from their part (BYTES as UTF-8 text). Raises BadRequest naming the input."""
    if not header_length.isascii() or not header_length.isdigit():
        raise BadRequest(f"{BINARY_HEADER} must be a decimal byte count, got {header_length!r}")
    size = int(header_length)
    if not 0 < size <= len(raw):
        raise BadRequest(f"{BINARY_HEADER} is {size} but the body has {len(raw)} byte(s)")
    try:
        body = orjson.loads(raw[:size])
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the binary request's JSON header is not JSON: {error}") from None
    body = _object(body, "the inference header")
    inputs = body.get("inputs")
    offset = size
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        name = _input_name(tensor, index)
        where = f"input {name}"
        length = _parameters(tensor, where).get("binary_data_size")
        if length is None:
            continue
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise BadRequest(f"{where}: binary_data_size must be a byte count, got {length!r}")
        if "data" in tensor:
            raise BadRequest(f"{where}: give either data or binary_data_size, not both")
        if offset + length > len(raw):
            raise BadRequest(
                f"{where}: binary_data_size {length} runs past the end of the body "
                f"({len(raw) - offset} byte(s) left)"
            )
        count = _element_count(tensor, where)
        datatype = _datatype(tensor, where)
        part, offset = raw[offset : offset + length], offset + length
        tensor["data"] = _binary_elements(datatype, part, count, where)
        del tensor["parameters"]["binary_data_size"]
    if offset != len(raw):
        raise BadRequest(
            f"the body has {len(raw) - offset} byte(s) after the header and the binary parts "
            "its binary_data_size parameters declare"
        )
    return body


# -- answers ---------------------------------------------------------------------------


def _extras(enriched: Enriched, explain: bool) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if any(enriched.defaulted):
        extras["defaulted"] = enriched.defaulted
    if explain:
        extras["features"] = [enriched.row(i) for i in range(len(enriched.missing))]
    return extras


def plain_answer(
    name: str, version: str, prediction: Prediction, enriched: Enriched, explain: bool
) -> dict[str, Any]:
    return {
        "model": name,
        "version": version,
        "predictions": prediction.values,
        **_extras(enriched, explain),
    }


def seldon_answer(
    output: str, version: str, prediction: Prediction, enriched: Enriched, explain: bool
) -> dict[str, Any]:
    names = (
        [f"{output}_{i}" for i in range(prediction.shape[1])]
        if len(prediction.shape) == 2
        else [output]
    )
    tags: dict[str, Any] = {"lykeion.version": version, **_extras(enriched, explain)}
    return {"data": {"names": names, "ndarray": prediction.values}, "meta": {"tags": tags}}


def v2_answer(
    name: str,
    version: str,
    output: str,
    prediction: Prediction,
    enriched: Enriched,
    explain: bool,
    request_id: str | None,
) -> dict[str, Any]:
    flat = (
        [v for row in prediction.values for v in row]
        if len(prediction.shape) == 2
        else prediction.values
    )
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "outputs": [
            {
                "name": output,
                "shape": prediction.shape,
                "datatype": prediction.datatype,
                "data": flat,
            }
        ],
    }
    if request_id is not None:
        answer["id"] = request_id
    extras = _extras(enriched, explain)
    if extras:
        answer["parameters"] = extras
    return answer


SELDON_FAILURE_REASONS: Final = {
    400: "MICROSERVICE_BAD_DATA",
    404: "MICROSERVICE_NOT_FOUND",
    413: "MICROSERVICE_BAD_DATA",
    422: "MICROSERVICE_BAD_DATA",
    503: "MICROSERVICE_UNAVAILABLE",
}


def error_body(protocol: str, status: int, message: str, **extra: Any) -> dict[str, Any]:
    """The protocol's own error object: Seldon v1's SeldonMessage `status` (code, info,
    reason, status FAILURE; extras under `meta.tags`); V2's `$inference_error_response`
    (`{"error"}`) and the same for `/predict`, extras beside the message."""
    if protocol == "seldon":
        answer: dict[str, Any] = {
            "status": {
                "code": status,
                "info": message,
                "reason": SELDON_FAILURE_REASONS.get(status, "MICROSERVICE_INTERNAL_ERROR"),
                "status": "FAILURE",
            }
        }
        if extra:
            answer["meta"] = {"tags": extra}
        return answer
    return {"error": message, **extra}
