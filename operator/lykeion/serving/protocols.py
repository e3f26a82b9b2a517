"""Request bodies of the three protocols -> rows of entity keys, and answers back.

- plain:     POST /predict  `{"rider_id": "r42"}` or `{"keys": [{"rider_id": "r1"}, ...]}`
- Seldon v1: POST /api/v1.0/predictions  `{"data": {"names": [...], "ndarray": [[...]]}}`
             (also `tensor` and `jsonData`)
- V2 (Open Inference Protocol): POST /v2/models/<name>/infer, one input per entity key.
"""

from __future__ import annotations

from typing import Any

import orjson

from lykeion.serving.enrich import BadRequest, Enriched
from lykeion.serving.model import Prediction

MAX_ROWS = 1000


def _checked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(rows) > MAX_ROWS:
        raise BadRequest(f"{len(rows)} rows in one request; at most {MAX_ROWS}")
    return rows


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def plain_rows(body: Any) -> list[dict[str, Any]]:
    body = _object(body)
    if "keys" in body:
        keys = body["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise BadRequest('"keys" must be a list of objects of entity keys')
        return _checked(keys)
    return [body]


def seldon_rows(body: Any) -> list[dict[str, Any]]:
    body = _object(body)
    if "jsonData" in body:
        data = body["jsonData"]
        if not isinstance(data, dict):
            raise BadRequest('"jsonData" must be an object of entity keys')
        return _columns_to_rows(data)
    data = body.get("data")
    if not isinstance(data, dict):
        raise BadRequest('expected "data" (names with ndarray or tensor) or "jsonData"')
    names = data.get("names")
    if not isinstance(names, list) or not names:
        raise BadRequest('"data.names" must list the entity keys of the columns')
    if "ndarray" in data:
        matrix = data["ndarray"]
        if not isinstance(matrix, list):
            raise BadRequest('"data.ndarray" must be a list of rows')
        if matrix and not isinstance(matrix[0], list):
            matrix = [matrix]
    elif "tensor" in data:
        tensor = data["tensor"]
        values = tensor.get("values") if isinstance(tensor, dict) else None
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if (
            not isinstance(values, list)
            or not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(n, int) and n > 0 for n in shape)
            or shape[0] * shape[1] != len(values)
        ):
            raise BadRequest(
                '"data.tensor" needs "values" and a 2-dimensional "shape" of positive '
                "sizes whose product is the number of values"
            )
        width = shape[1]
        matrix = [values[i : i + width] for i in range(0, len(values), width)]
    else:
        raise BadRequest('"data" must hold "ndarray" or "tensor"')
    rows = []
    for index, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != len(names):
            raise BadRequest(f"row {index} does not have one value per name in data.names")
        rows.append(dict(zip(names, row, strict=True)))
    return _checked(rows)


def v2_rows(body: Any) -> list[dict[str, Any]]:
    body = _object(body)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest('"inputs" must be a non-empty list of tensors, one per entity key')
    columns: dict[str, list[Any]] = {}
    for tensor in inputs:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequest("each input needs a name, shape, datatype and data")
        data = tensor.get("data")
        if not isinstance(data, list):
            raise BadRequest(f"input {tensor['name']}: data must be a list")
        flat = [v for item in data for v in (item if isinstance(item, list) else [item])]
        columns[tensor["name"]] = flat
    return _columns_to_rows(columns)


BINARY_HEADER = "inference-header-content-length"


def v2_binary_body(raw: bytes, header_length: str) -> Any:
    """The V2 binary extension (tritonclient's default): a JSON header of `header_length`
    bytes, then each input's raw bytes; BYTES elements are a 4-byte little-endian length
    and the bytes. The header's inputs get `data` decoded from their part."""
    try:
        size = int(header_length)
        body = orjson.loads(raw[:size])
    except (ValueError, orjson.JSONDecodeError) as error:
        raise BadRequest(f"bad binary inference header: {error}") from error
    offset = size
    for tensor in body.get("inputs", []) if isinstance(body, dict) else []:
        if not isinstance(tensor, dict):
            raise BadRequest("each input must be an object")
        parameters = tensor.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest(f"input {tensor.get('name')}: parameters must be an object")
        length = parameters.get("binary_data_size")
        if length is None:
            continue
        if not isinstance(length, int) or length < 0:
            raise BadRequest(f"input {tensor.get('name')}: bad binary_data_size {length!r}")
        part, offset = raw[offset : offset + length], offset + length
        if tensor.get("datatype") != "BYTES":
            raise BadRequest(f"input {tensor.get('name')}: binary keys must be BYTES")
        values, cursor = [], 0
        while cursor + 4 <= len(part):
            n = int.from_bytes(part[cursor : cursor + 4], "little")
            values.append(part[cursor + 4 : cursor + 4 + n].decode())
            cursor += 4 + n
        tensor["data"] = values
    return body


def _columns_to_rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    listed = {k: v if isinstance(v, list) else [v] for k, v in columns.items()}
    lengths = {len(v) for v in listed.values()}
    if len(lengths) != 1:
        raise BadRequest("every entity key needs the same number of values")
    count = lengths.pop()
    return _checked([{k: v[i] for k, v in listed.items()} for i in range(count)])


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
