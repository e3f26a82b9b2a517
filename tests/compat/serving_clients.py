"""Calls a running model server with inference clients nobody here wrote.

Run by the isolated venv that scripts/install-serving-clients.sh prints, never by the
project's own environment (seldon-core pins numpy < 2 and protobuf 5.29):

    $(scripts/install-serving-clients.sh) tests/compat/serving_clients.py \\
        --url http://127.0.0.1:PORT --model NAME --key-name rider_id --keys r1,r2 \\
        [--namespace NS --deployment NAME] [--bearer-token TOKEN]

Two clients, each through its public API only:

* seldon-core's ``SeldonClient.predict`` (Seldon v1 protocol, REST), with
  ``payload_type="ndarray"``, ``names=[key_name]`` and one row per key. With
  ``--deployment`` it goes through the "istio" gateway, which posts to
  ``/seldon/{namespace}/{deployment}/api/v1.0/predictions`` (``/seldon/{deployment}/...``
  without ``--namespace``); without, through the "seldon" gateway, which posts to
  ``/api/v1.0/predictions``. ``--seldon-json-data`` also sends the keys as
  ``{"jsonData": {key_name: [...]}}``.
* tritonclient's HTTP ``InferenceServerClient`` (V2 / Open Inference Protocol):
  ``is_server_live``, ``is_server_ready``, ``is_model_ready``, ``get_model_metadata`` and
  ``infer`` with one BYTES input named ``key_name`` of shape ``[n]``. The input goes as
  JSON (``binary_data=False``) unless ``--v2-binary-input`` asks for Triton's binary
  tensor extension; no outputs are requested, so, as with any default tritonclient call,
  the request carries ``"parameters": {"binary_data_output": true}``, which a server may
  ignore by answering in plain JSON.

Prints one JSON object on stdout:

    {"seldon": {"names": [...], "values": [...], "meta": {...}},
     "v2": {"live": bool, "server_ready": bool, "ready": bool, "metadata": {...},
            "model_name": str, "model_version": str|null, "outputs": {name: [values]}}}

or exits non-zero with the failing step on stderr. Everything the libraries print goes
to stderr, so stdout stays that one object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
from typing import Any
from urllib.parse import urlsplit


class CompatError(Exception):
    """A client call failed or answered something unusable."""


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and bytes to JSON-able Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _seldon_values(response: dict) -> dict:
    data = response.get("data")
    if not isinstance(data, dict):
        raise CompatError(f"seldon: response has no 'data' object: {json.dumps(response)[:500]}")
    if "ndarray" in data:
        values = data["ndarray"]
    elif "tensor" in data:
        values = data["tensor"].get("values", [])
    else:
        raise CompatError(
            f"seldon: response data has neither ndarray nor tensor: {json.dumps(data)[:500]}"
        )
    return {"names": data.get("names", []), "values": values, "meta": response.get("meta", {})}


def call_seldon(
    args: argparse.Namespace, endpoint: str, prefix: str, keys: list[str], json_data: bool
) -> dict:
    import numpy as np
    from seldon_core.seldon_client import SeldonClient
    from seldon_core.utils import json_to_seldon_message

    client_kwargs: dict[str, Any] = {
        "transport": "rest",
        "gateway_endpoint": endpoint,
        "client_return_type": "dict",
    }
    call_kwargs: dict[str, Any] = {}
    if args.bearer_token:
        call_kwargs["headers"] = {"Authorization": f"Bearer {args.bearer_token}"}
    if args.deployment:
        if prefix:
            raise CompatError("seldon: a base path in --url cannot be combined with --deployment")
        client_kwargs.update(
            gateway="istio", deployment_name=args.deployment, namespace=args.namespace
        )
    elif prefix:
        # "istio" with a gateway_prefix posts to {endpoint}{prefix}/api/v1.0/predictions;
        # gateway_prefix is a predict() argument only.
        client_kwargs.update(gateway="istio")
        call_kwargs.update(gateway_prefix=prefix)
    else:
        client_kwargs.update(gateway="seldon")
    client = SeldonClient(**client_kwargs)
    if json_data:
        result = client.predict(json_data={args.key_name: keys}, **call_kwargs)
    else:
        # One row per key, one column named key_name: the shape a Seldon v1 tabular
        # model gets; numpy's '<U..' strings become JSON strings in the ndarray.
        result = client.predict(
            payload_type="ndarray",
            names=[args.key_name],
            data=np.array([[k] for k in keys]),
            **call_kwargs,
        )
    if not result.success:
        body = (
            json.dumps(result.response)[:500] if result.response is not None else "(no JSON body)"
        )
        raise CompatError(f"seldon: predict failed: {result.msg}: {body}")
    if not isinstance(result.response, dict):
        raise CompatError("seldon: predict answered 200 with a body that is not a JSON object")
    # SeldonClient's other return type ("proto") parses the body into a SeldonMessage and
    # silently yields None when that fails (e.g. a "meta" key outside puid, tags, routing,
    # requestPath, metrics), so the body must be a valid SeldonMessage, not just JSON.
    try:
        json_to_seldon_message(result.response)
    except Exception as exc:
        raise CompatError(
            "seldon: response is not a valid SeldonMessage "
            f"({type(exc).__name__}: {getattr(exc, 'message', None) or exc}): "
            f"{json.dumps(result.response)[:500]}"
        ) from exc
    return _seldon_values(result.response)


def call_v2(args: argparse.Namespace, base: str, keys: list[str]) -> dict:
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(
        url=base, connection_timeout=args.timeout, network_timeout=args.timeout
    )
    headers = {"Authorization": f"Bearer {args.bearer_token}"} if args.bearer_token else None
    try:
        out: dict[str, Any] = {
            "live": client.is_server_live(headers=headers),
            "server_ready": client.is_server_ready(headers=headers),
            "ready": client.is_model_ready(args.model, headers=headers),
        }
        try:
            out["metadata"] = client.get_model_metadata(args.model, headers=headers)
        except InferenceServerException as exc:
            raise CompatError(f"v2: get_model_metadata({args.model!r}) failed: {exc}") from exc
        tensor = httpclient.InferInput(args.key_name, [len(keys)], "BYTES")
        tensor.set_data_from_numpy(
            np.array(keys, dtype=np.object_), binary_data=args.v2_binary_input
        )
        try:
            result = client.infer(args.model, inputs=[tensor], headers=headers)
        except InferenceServerException as exc:
            raise CompatError(f"v2: infer({args.model!r}) failed: {exc}") from exc
        response = result.get_response()
        outputs = {}
        for output in response.get("outputs") or []:
            array = result.as_numpy(output["name"])
            outputs[output["name"]] = _plain(array)
        if not outputs:
            raise CompatError(f"v2: infer answered no outputs: {json.dumps(response)[:500]}")
        out.update(
            model_name=response.get("model_name"),
            model_version=response.get("model_version"),
            outputs=outputs,
        )
        return out
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://HOST:PORT of the model server")
    parser.add_argument("--model", required=True, help="V2 model name")
    parser.add_argument(
        "--key-name", required=True, help="name of the entity key input, e.g. rider_id"
    )
    parser.add_argument("--keys", required=True, help="comma-separated key values")
    parser.add_argument("--namespace", help="Seldon gateway path namespace")
    parser.add_argument("--deployment", help="Seldon gateway path deployment name")
    parser.add_argument(
        "--protocols", default="seldon,v2", help="which clients to run (default: seldon,v2)"
    )
    parser.add_argument(
        "--seldon-json-data", action="store_true", help="also predict with jsonData"
    )
    parser.add_argument(
        "--v2-binary-input", action="store_true", help="send the V2 input as binary data"
    )
    parser.add_argument(
        "--bearer-token", help="sent as `Authorization: Bearer ...` by both clients"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="V2 connection/network timeout, seconds"
    )
    args = parser.parse_args(argv)

    url = urlsplit(args.url)
    if url.scheme != "http" or not url.netloc:
        parser.error(f"--url must be http://HOST:PORT[/base], got {args.url!r}")
    prefix = url.path.rstrip("/")
    keys = [k for k in args.keys.split(",") if k]
    if not keys:
        parser.error("--keys is empty")
    protocols = {p.strip() for p in args.protocols.split(",") if p.strip()}
    if not protocols <= {"seldon", "v2"}:
        parser.error(f"--protocols takes seldon and/or v2, got {args.protocols!r}")

    result: dict[str, Any] = {}
    step = ""
    try:
        # Nothing but the result may reach stdout.
        with contextlib.redirect_stdout(sys.stderr):
            if "seldon" in protocols:
                step = "seldon"
                result["seldon"] = call_seldon(args, url.netloc, prefix, keys, json_data=False)
                if args.seldon_json_data:
                    step = "seldon (jsonData)"
                    result["seldon_json_data"] = call_seldon(
                        args, url.netloc, prefix, keys, json_data=True
                    )
            if "v2" in protocols:
                step = "v2"
                result["v2"] = call_v2(args, url.netloc + prefix, keys)
    except CompatError as exc:
        print(f"serving_clients: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - any client failure is the answer
        traceback.print_exc(file=sys.stderr)
        print(f"serving_clients: {step}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
