"""Access by Kubernetes identity: bearer tokens checked with TokenReview, rights with
SubjectAccessReview, both answers cached briefly.

Callers present `Authorization: Bearer <token>` (a ServiceAccount token, or any token the
cluster accepts: the embedded platform's kubeconfig token). The API server says who the
token belongs to (TokenReview, authentication.k8s.io/v1) and whether that user may do
something to a namespaced Lykeion object (SubjectAccessReview, authorization.k8s.io/v1);
the server asking needs `create` on both (the chart's ClusterRole grants it). No second
user database.

The rights the APIs ask for (group `lykeion.io`), granted with ordinary Roles:

| what                                  | verb     | resource                  |
| ------------------------------------- | -------- | ------------------------- |
| read features of a FeatureManifest    | `get`    | `featuremanifests/data`   |
| see a FeatureManifest in the catalog  | `get`    | `featuremanifests`        |
| predict with a Deployment's endpoint  | `create` | `deployments/predict`     |

`featuremanifests/data` and `deployments/predict` are subresource-style names the API
server does not serve; RBAC matches them like any other, so reading a manifest's
definition and reading its feature values are separate rights.

Answers are cached for `ttl` seconds in bounded LRU maps (tokens by their SHA-256, never
the token itself): a busy client costs one TokenReview and one SubjectAccessReview per
`ttl`, the rest is a dictionary lookup. Denials are cached too, so a caller hammering
with a bad token costs the API server little. A token revoked or a RoleBinding removed
takes effect within `ttl`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import tempfile
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import yaml

GROUP = "lykeion.io"
READ_FEATURES = ("get", "featuremanifests", "data")
SEE_MANIFEST = ("get", "featuremanifests", "")
PREDICT = ("create", "deployments", "predict")
IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")

K = TypeVar("K")
V = TypeVar("V")


class Unauthenticated(Exception):
    """No token, or one the cluster does not accept (401)."""

    status = 401


class Forbidden(Exception):
    """A known caller without the right (403)."""

    status = 403


class ReviewUnavailable(Exception):
    """The API server did not answer a review (503: the caller may retry)."""

    status = 503


@dataclass(frozen=True)
class Caller:
    """Who a token belongs to, as TokenReview says."""

    user: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Right:
    """One SubjectAccessReview's resource attributes (group `lykeion.io`)."""

    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str

    @classmethod
    def of(cls, kind: tuple[str, str, str], namespace: str, name: str) -> Right:
        verb, resource, subresource = kind
        return cls(verb, resource, subresource, namespace, name)

    def describe(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {resource}.{GROUP} {self.name!r} in namespace {self.namespace!r}"


class TtlCache(Generic[K, V]):
    """At most `size` entries, each forgotten `ttl` seconds after it was stored."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, value = entry
        if time.monotonic() - stored > self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class ApiServer:
    """Where reviews go and with which credentials (the reviewing server's own)."""

    url: str
    token: str | None = None
    token_file: Path | None = None
    """Re-read on each review: projected ServiceAccount tokens rotate."""
    verify: ssl.SSLContext | bool = True
    client_cert: tuple[str, str] | None = None

    @classmethod
    def in_cluster(cls, env: Mapping[str, str]) -> ApiServer:
        """The pod's ServiceAccount: its token file and CA, the service's address."""
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise ValueError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
        host = f"[{host}]" if ":" in host else host
        context = ssl.create_default_context(cafile=str(IN_CLUSTER / "ca.crt"))
        return cls(f"https://{host}:{port}", token_file=IN_CLUSTER / "token", verify=context)

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiServer:
        """The current context of a kubeconfig: server, CA (or insecure-skip-tls-verify),
        and a token or client certificate (files or inline `-data`)."""
        config = yaml.safe_load(path.read_text())
        current = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        verify: ssl.SSLContext | bool = True
        if cluster.get("insecure-skip-tls-verify"):
            verify = False
        elif cluster.get("certificate-authority") or cluster.get("certificate-authority-data"):
            verify = ssl.create_default_context(
                cafile=_material(cluster, "certificate-authority", path.parent)
            )
        cert = None
        if user.get("client-certificate") or user.get("client-certificate-data"):
            cert = (
                _material(user, "client-certificate", path.parent),
                _material(user, "client-key", path.parent),
            )
        token_file = Path(user["tokenFile"]) if user.get("tokenFile") else None
        return cls(cluster["server"], user.get("token"), token_file, verify, cert)

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token


def _material(section: Mapping[str, Any], key: str, base: Path) -> str:
    """A file path for `key` (relative to the kubeconfig) or `key-data` written to a file."""
    if section.get(key):
        return str(base / section[key])
    import base64

    handle, name = tempfile.mkstemp(prefix="lykeion-kube-")
    with os.fdopen(handle, "wb") as out:
        out.write(base64.b64decode(section[f"{key}-data"]))
    return name


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; Unauthenticated otherwise."""
    if not authorization:
        raise Unauthenticated(
            "no bearer token: send Authorization: Bearer <token> (a ServiceAccount token, "
            "or the token of your kubeconfig)"
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token


class AccessReviewer:
    """TokenReview and SubjectAccessReview against `api`, cached for `ttl` seconds in maps
    of at most `size` entries. One instance per server process (it keeps a connection
    pool); `check` is what request handlers call."""

    def __init__(self, api: ApiServer, ttl: float = 10.0, size: int = 10_000) -> None:
        self.api = api
        self.identities: TtlCache[str, Caller | str] = TtlCache(ttl, size)
        """Token hash -> Caller, or why the token was refused."""
        self.decisions: TtlCache[tuple[Caller, Right], bool] = TtlCache(ttl, size)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reviews = 0
        """Reviews sent to the API server (for tests and benchmarks)."""

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                base_url=self.api.url, verify=self.api.verify, cert=self.api.client_cert,
                timeout=httpx.Timeout(5.0), headers={"content-type": "application/json"},
            )  # fmt: skip
            self._loop = loop
        return self._client

    async def _review(self, path: str, spec: dict[str, Any], kind: str, group: str) -> Any:
        body = {"apiVersion": f"{group}/v1", "kind": kind, "spec": spec}
        headers = {}
        own = self.api.bearer()
        if own:
            headers["authorization"] = f"Bearer {own}"
        self.reviews += 1
        try:
            answer = await self._http().post(path, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise ReviewUnavailable(f"the Kubernetes API server did not answer: {error}") from None
        if answer.status_code != 201 and answer.status_code != 200:
            raise ReviewUnavailable(
                f"the Kubernetes API server refused the {kind} ({answer.status_code}): "
                f"{answer.text[:200]}"
            )
        return answer.json().get("status") or {}

    async def authenticate(self, token: str) -> Caller:
        """Who `token` belongs to; Unauthenticated when the cluster does not accept it."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        known = self.identities.get(digest)
        if known is None:
            status = await self._review(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {"token": token},
                "TokenReview",
                "authentication.k8s.io",
            )
            if status.get("authenticated"):
                user = status.get("user") or {}
                extra = user.get("extra") or {}
                known = Caller(
                    user.get("username", ""),
                    user.get("uid", ""),
                    tuple(user.get("groups") or ()),
                    tuple(sorted((k, tuple(v)) for k, v in extra.items())),
                )
            else:
                known = status.get("error") or "the token is not valid for this cluster"
            self.identities.put(digest, known)
        if isinstance(known, str):
            raise Unauthenticated(f"the bearer token was not accepted: {known}")
        return known

    async def allowed(self, caller: Caller, right: Right) -> bool:
        """Whether `caller` has `right` (SubjectAccessReview, cached)."""
        decision = self.decisions.get((caller, right))
        if decision is None:
            spec: dict[str, Any] = {
                "user": caller.user,
                "uid": caller.uid,
                "groups": list(caller.groups),
                "extra": {k: list(v) for k, v in caller.extra},
                "resourceAttributes": {
                    "group": GROUP,
                    "verb": right.verb,
                    "resource": right.resource,
                    "subresource": right.subresource,
                    "namespace": right.namespace,
                    "name": right.name,
                },
            }
            status = await self._review(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                spec,
                "SubjectAccessReview",
                "authorization.k8s.io",
            )
            decision = bool(status.get("allowed"))
            self.decisions.put((caller, right), decision)
        return decision

    async def require(self, caller: Caller, right: Right) -> None:
        """Forbidden naming the user and the right, unless `caller` has it."""
        if not await self.allowed(caller, right):
            raise Forbidden(f"{caller.user} may not {right.describe()}")

    async def check(self, authorization: str | None, right: Right) -> Caller:
        """The caller of an `Authorization` header, if it has `right`."""
        caller = await self.authenticate(bearer_token(authorization))
        await self.require(caller, right)
        return caller

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


ACCESS_MODES = ("off", "kubernetes")


def reviewer(
    mode: str, kubeconfig: Path | None, env: Mapping[str, str], ttl: float = 10.0
) -> AccessReviewer | None:
    """The one setting: `off` -> None (everyone who reaches the server is served);
    `kubernetes` -> reviews sent with `kubeconfig`'s credentials; when None, with the pod's
    ServiceAccount in a cluster, else with `$KUBECONFIG`'s (a server the embedded
    platform's local executor starts). ValueError when none of these is there."""
    if mode == "off":
        return None
    if mode != "kubernetes":
        raise ValueError(f"access must be one of {', '.join(ACCESS_MODES)}, not {mode!r}")
    if kubeconfig is None and not env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBECONFIG"):
        kubeconfig = Path(env["KUBECONFIG"])
    api = ApiServer.from_kubeconfig(kubeconfig) if kubeconfig else ApiServer.in_cluster(env)
    return AccessReviewer(api, ttl=ttl)
