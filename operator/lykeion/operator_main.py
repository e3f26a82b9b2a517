"""The Lykeion operator: kopf configured explicitly, the object index, health and metrics.

lykeion-operator [--kubeconfig PATH] [--executor local|kubernetes] [--health-port 8080]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lykeion import GROUP, VERSION, handlers
from lykeion.api.kinds import KINDS
from lykeion.config import PlatformConfig
from lykeion.executors import make_executor
from lykeion.kube import Kube, api_client, kubeconfig_login
from lykeion.runtime import Runtime
from lykeion.watch_health import WatchHealth, install, watched_plurals

ANNOTATION_PREFIX = GROUP
FINALIZER = f"{GROUP}/finalizer"


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig of `Options` (the same file
    the operator's own client reads)."""
    options: Options = memo.options
    found: kopf.ConnectionInfo | None = kopf.login_with_service_account(memo=memo, **kwargs)
    return found or kubeconfig_login(options.kubeconfig)


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    # Own finalizer and annotations; nothing of kopf's in status (the schema is strict).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Events only for what needs a human's attention; one per success would double API load.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60

    # Built once in main() and handed down through the memo.
    options: Options = memo.options
    config = options.platform
    kube = Kube(api_client(options.kubeconfig))
    executor = make_executor(
        options.executor,
        kube,
        config.state_dir,
        data_volume=config.data_volume,
        data_dir=config.data_dir,
        job_env=config.package_index.env(),
        kubeconfig=options.kubeconfig,
        ca_bundle=config.ca_bundle,
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(
        kube=kube,
        declarations={d.kind.kind: d for d in handlers.DECLARATIONS},
        executor=executor,
        config=config,
    )
    # List everything once before handlers run, so that a restart never reports a
    # dependency as missing only because its watch event has not arrived yet.
    for kind in KINDS:
        for item in await kube.list_all(kind):
            runtime.index.observe(item)
    memo.runtime = runtime
    memo.ready = True
    logger.info("object index primed: %s", runtime.index.counts())


@dataclass(frozen=True)
class Options:
    """The operator's configuration, read once by `main()` (flags, then the environment)."""

    platform: PlatformConfig
    executor: str
    """`local` or `kubernetes` (`--executor`, `LYKEION_EXECUTOR`)."""
    kubeconfig: str | None
    """`--kubeconfig`, else `$KUBECONFIG` (a list joined by `os.pathsep` is merged); None:
    in-cluster credentials, else `~/.kube/config`."""
    health_port: int
    """Port of /healthz, /readyz and /metrics; 0 disables them."""
    health_host: str


def _observer(plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural)
    async def observed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is not None:
            runtime.observe(event["type"], dict(event["object"]))


for _kind in KINDS:
    _observer(_kind.plural)


@kopf.on.startup()
async def serve_health(memo: kopf.Memo, **_: Any) -> None:
    options: Options = memo.options
    port = options.health_port
    if port == 0:
        return

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        # Ready once the object index is primed and while every kopf watch is connected.
        if not getattr(memo, "ready", False):
            return web.Response(text="starting: object index not primed", status=503)
        health: WatchHealth | None = getattr(memo, "watch_health", None)
        if health is None:
            return web.Response(text="ready")
        ok, reason = health.state()
        return web.Response(text=reason, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes(
        [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, options.health_host, port).start()
    memo.health_runner = runner


@kopf.on.cleanup()
async def stop_health(memo: kopf.Memo, **_: Any) -> None:
    runner = getattr(memo, "health_runner", None)
    if runner is not None:
        await runner.cleanup()


def parse_options(
    argv: list[str] | None, env: Mapping[str, str]
) -> tuple[Options, argparse.Namespace]:
    """The operator's configuration from its flags, then `env` (read, never written), and
    the parsed flags (`--namespace`, `--verbose`). Exits (argparse's SystemExit 2) naming a
    flag with a bad value."""
    parser = argparse.ArgumentParser(
        prog="lykeion-operator", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)"
    )
    parser.add_argument(
        "--executor",
        choices=["local", "kubernetes"],
        default=env.get("LYKEION_EXECUTOR", "local"),
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=int(env.get("LYKEION_HEALTH_PORT", "8080")),
        help="port of /healthz, /readyz and /metrics (0 disables)",
    )
    parser.add_argument("--health-host", default=env.get("LYKEION_HEALTH_HOST", "127.0.0.1"))
    parser.add_argument(
        "--namespace", action="append", help="watch only these namespaces (default: all)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        platform = PlatformConfig.from_env(env)
    except ValueError as error:  # a setting that cannot be read: exit 2 naming it
        parser.error(str(error))
    options = Options(
        platform=platform,
        executor=args.executor,
        # kopf's login and the operator's client take it from here.
        kubeconfig=args.kubeconfig or env.get("KUBECONFIG") or None,
        health_port=args.health_port,
        health_host=args.health_host,
    )
    return options, args


def main(argv: list[str] | None = None) -> None:
    options, args = parse_options(argv, os.environ)
    handlers.register(options.platform.poll_seconds)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    if not args.verbose:
        # Per-object success lines drown real problems at hundreds of objects.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # A rollout reads each version's /metrics every poll: one line per request is noise.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    health = WatchHealth(GROUP, VERSION, watched_plurals(KINDS))
    install(health)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace or [],
            standalone=True,
            memo=kopf.Memo(watch_health=health, options=options),
        )
    )


if __name__ == "__main__":
    main()
