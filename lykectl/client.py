"""Kubeconfig loading and the CustomObjectsApi calls lykectl makes, with errors made readable.

The connection is opened lazily, on the first call, so that input is validated (and
rejected) before lykectl ever needs a reachable API server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from lykectl.errors import CliError
from lykeion import GROUP, VERSION
from lykeion.api.kinds import Kind, kind_of

FIELD_MANAGER = "lykectl"
DEFAULT_NAMESPACE = "default"
REQUEST_TIMEOUT = 30.0
T = TypeVar("T")


def default_kubeconfig(home: Path | None = None) -> str:
    """$KUBECONFIG, else ~/.lykeion/kubeconfig (written by `lykectl up`), else ~/.kube/config."""
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        return from_env
    home = home or Path.home()
    embedded = home / ".lykeion" / "kubeconfig"
    return str(embedded if embedded.exists() else home / ".kube" / "config")


def context_namespace(kubeconfig: str) -> str | None:
    """The namespace of the kubeconfig's current context, as kubectl uses it; None when it
    names none or the kubeconfig cannot be read (the error surfaces on the first call)."""
    paths = [Path(p).expanduser() for p in kubeconfig.split(os.pathsep) if p]
    if not any(p.exists() for p in paths):
        return None
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError, ValueError, TypeError, KeyError):
        return None
    namespace = (active or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else None


class AlreadyExists(CliError):
    """A create found an object of that kind and name in the namespace (HTTP 409)."""


def resource(kind: Kind, name: str) -> str:
    """`model.lykeion.io/forward-default-1.0`, the way kubectl names what it touched."""
    return f"{kind.singular}.{GROUP}/{name}"


class Cluster:
    """One namespace of one API server, as seen through a kubeconfig."""

    def __init__(self, kubeconfig: str | None, namespace: str) -> None:
        self.kubeconfig = kubeconfig or default_kubeconfig()
        self.namespace = namespace
        self.host = "<unknown>"

    @cached_property
    def _api(self) -> Any:
        paths = [Path(p).expanduser() for p in self.kubeconfig.split(os.pathsep) if p]
        if not any(p.exists() for p in paths):
            raise CliError(
                f"no kubeconfig at {self.kubeconfig} (start the embedded platform with "
                "`lykectl up`, or pass --kubeconfig)"
            )
        configuration = client.Configuration()
        try:
            config.load_kube_config(config_file=self.kubeconfig, client_configuration=configuration)
        except (ConfigException, OSError, ValueError) as error:
            raise CliError(f"cannot load kubeconfig {self.kubeconfig}: {error}") from None
        # One retry: a refused connection should be reported in a second, not after backoff.
        configuration.retries = 1
        if not configuration.verify_ssl:
            # The kubeconfig asks for this (the embedded platform's does); kubectl is quiet too.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.host = str(configuration.host)
        return client.CustomObjectsApi(client.ApiClient(configuration))

    def in_namespace(self, namespace: str) -> Cluster:
        """The same API server and connection, another namespace."""
        if namespace == self.namespace:
            return self
        other = Cluster(self.kubeconfig, namespace)
        if "_api" in self.__dict__:
            other.__dict__["_api"], other.host = self.__dict__["_api"], self.host
        return other

    def _call(self, fn: Callable[[Any], T]) -> T:
        api = self._api
        try:
            return fn(api)
        except urllib3.exceptions.HTTPError:
            raise CliError(
                f"cannot reach the API server at {self.host} (is `lykectl up` running?)"
            ) from None

    def _not_found(self, kind: Kind, name: str) -> CliError:
        return CliError(f"{kind.kind} {name} not found in namespace {self.namespace}")

    def find(self, kind: Kind, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call(
                lambda api: api.get_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    kind.plural,
                    name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def get(self, kind: Kind, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        if found is None:
            raise self._not_found(kind, name)
        return found

    def list(self, kind: Kind, all_namespaces: bool = False) -> list[dict[str, Any]]:
        def call(api: Any) -> Any:
            if all_namespaces:
                return api.list_cluster_custom_object(
                    GROUP, VERSION, kind.plural, _request_timeout=REQUEST_TIMEOUT
                )
            return api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, kind.plural, _request_timeout=REQUEST_TIMEOUT
            )

        try:
            answer = self._call(call)
        except ApiException as error:
            if error.status == 404:
                raise CliError(
                    f"the API server does not serve {kind.crd_name} "
                    "(are the Lykeion CRDs installed?)"
                ) from None
            raise
        items: list[dict[str, Any]] = answer.get("items", [])
        for item in items:
            item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
            item.setdefault("kind", kind.kind)
        return items

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = kind_of(body)
        name = body["metadata"]["name"]
        try:
            return self._call(
                lambda api: api.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self._namespace_of(body),
                    kind.plural,
                    body,
                    field_manager=FIELD_MANAGER,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as error:
            if error.status == 409:
                raise AlreadyExists(
                    f"{kind.kind} {name} already exists in namespace {self._namespace_of(body)}"
                ) from None
            raise

    def apply(self, body: dict[str, Any], force_conflicts: bool = False) -> dict[str, Any]:
        """Server-side apply as field manager `lykectl`."""
        kind = kind_of(body)
        # Read the raw answer: the generated client maps only 200 to a body, and an apply
        # that creates the object answers 201.
        answer = self._call(
            lambda api: api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self._namespace_of(body),
                kind.plural,
                body["metadata"]["name"],
                body,
                field_manager=FIELD_MANAGER,
                force=force_conflicts or None,
                _content_type="application/apply-patch+yaml",
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
            )
        )
        applied: dict[str, Any] = json.loads(answer.data)
        return applied

    def merge_patch(self, kind: Kind, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch; put `metadata.resourceVersion` in `patch` to get a 409 on a race."""
        try:
            return self._call(
                lambda api: api.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    kind.plural,
                    name,
                    patch,
                    field_manager=FIELD_MANAGER,
                    _content_type="application/merge-patch+json",
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as error:
            if error.status == 404:
                raise self._not_found(kind, name) from None
            raise

    def delete(self, kind: Kind, name: str) -> None:
        try:
            self._call(
                lambda api: api.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    kind.plural,
                    name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as error:
            if error.status == 404:
                raise self._not_found(kind, name) from None
            raise

    def _namespace_of(self, body: dict[str, Any]) -> str:
        return str(body["metadata"].get("namespace") or self.namespace)


def is_conflict(error: Exception) -> bool:
    return isinstance(error, ApiException) and error.status == 409
