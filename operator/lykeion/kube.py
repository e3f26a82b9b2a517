"""The thin I/O layer: get, list, status patch and server-side apply, with an error taxonomy.

The kubernetes client is synchronous; calls run in worker threads so that the kopf
event loop never blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from lykeion import FIELD_MANAGER, GROUP, VERSION
from lykeion.api.kinds import BY_KIND, Kind

T = TypeVar("T")
RETRYABLE = {409, 429, 500, 502, 503, 504}


def api_client(kubeconfig: Path | str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod, else the given or default kubeconfig."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration
    )
    configuration.connection_pool_maxsize = 32
    if not configuration.verify_ssl:
        # The embedded control plane has a self-signed certificate; say so once, not per call.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return client.ApiClient(configuration)


def kubeconfig_login(kubeconfig: Path | str | None) -> kopf.ConnectionInfo | None:
    """kopf's credentials (`kopf.on.login`) from `kubeconfig` (None: `~/.kube/config`; a
    list joined by `os.pathsep` is merged as kubectl merges it), read by the client
    library's loader as `api_client` reads it: server, CA, TLS verification, client
    certificate and key, bearer token. None when no file is given and `~/.kube/config` does
    not exist. Raises `kopf.LoginError` naming the file when it cannot be read or lacks a
    current context."""
    if kubeconfig is None:
        default = Path("~/.kube/config").expanduser()
        if not default.exists():
            return None
        kubeconfig = default
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    except (config.ConfigException, OSError) as error:
        raise kopf.LoginError(f"kubeconfig {kubeconfig}: {error}") from error
    # A token sits under `BearerToken` (client >= 36.0.1) or `authorization` (before).
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def pod_log(core: client.CoreV1Api, name: str, namespace: str, **options: Any) -> str:
    """The log of pod `name` as text (UTF-8; bytes that are not are replaced); `options` as
    `read_namespaced_pod_log` takes them (`container`, `previous`, `tail_lines`). Read
    raw: the client's own result for this call is the repr of the bytes (`"b'...\\n'"`,
    kubernetes 36), not the text. Blocking; raises ApiException as the client does (e.g.
    400 for a pod on no node, 404 for no previous container)."""
    response = core.read_namespaced_pod_log(name, namespace, _preload_content=False, **options)
    try:
        return bytes(response.data).decode("utf-8", errors="replace")
    finally:
        response.release_conn()


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self._dynamic: DynamicClient | None = None

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except ApiException as error:
            if error.status in RETRYABLE:
                raise kopf.TemporaryError(
                    f"{what}: API server answered {error.status} {error.reason}", delay=2
                ) from error
            raise
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise kopf.TemporaryError(
                f"{what}: API server unreachable: {error}", delay=5
            ) from error

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await self._call(
                f"get {kind.kind} {name}",
                lambda: self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, kind.plural, name
                ),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], found)

    async def list_all(self, kind: Kind) -> list[dict[str, Any]]:
        answer: Any = await self._call(
            f"list {kind.plural}",
            lambda: self.custom.list_cluster_custom_object(GROUP, VERSION, kind.plural),
        )
        items: list[dict[str, Any]] = answer["items"]
        for item in items:
            item.setdefault("kind", kind.kind)
        return items

    async def patch_status(
        self, kind: Kind, namespace: str, name: str, status: dict[str, Any]
    ) -> bool:
        """Merge-patch the status subresource; False when the object is gone."""
        try:
            await self._call(
                f"patch status of {kind.kind} {name}",
                lambda: self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, kind.plural, name, {"status": status}
                ),
            )
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    async def apply(
        self, manifest: dict[str, Any], owner: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Server-side apply a child object, owned by `owner` when given."""
        if owner is not None:
            manifest = {
                **manifest,
                "metadata": {**manifest["metadata"], "ownerReferences": [owner_reference(owner)]},
            }

        def apply() -> dict[str, Any]:
            if self._dynamic is None:
                self._dynamic = DynamicClient(self.api)
            resource = self._dynamic.resources.get(
                api_version=manifest["apiVersion"], kind=manifest["kind"]
            )
            result = self._dynamic.server_side_apply(
                resource,
                body=manifest,
                name=manifest["metadata"]["name"],
                namespace=manifest["metadata"].get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
            return dict(result.to_dict())

        return await self._call(f"apply {manifest['kind']} {manifest['metadata']['name']}", apply)


def kind_named(name: str) -> Kind:
    return BY_KIND[name]
