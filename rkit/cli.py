"""The ``rkit`` command: ``dev``, ``worker APP``, ``api APP``, ``crons list APP``.

``APP`` is an import path like uvicorn's: ``myservice.tasks:app``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .app import ENV_QUEUE_URL, ENV_URL, App

DEFAULT_APP = "rkit.example:app"
ENV_TOKEN = "RKIT_ADMIN_TOKEN"


def start_line(command: str, path: str, app: App) -> str:
    """What a process prints when it starts: the App and the Redis it uses (password
    masked), so a worker on the wrong (or an embedded) Redis is seen at once."""
    state, queue = app.describe_redis()
    where = f"redis {state}" if state == queue else f"state redis {state}, queue redis {queue}"
    return f"rkit {command}: app {path} (namespace {app.namespace!r}) on {where}, pid {os.getpid()}"


def load_served_app(command: str, args: argparse.Namespace) -> App:
    """The App of ``rkit worker``/``rkit api``: ``--redis-url`` wins over the
    environment; the embedded fakeredis (no URL at all) is refused unless
    ``--embedded``: a process on its own private Redis never sees a job."""
    if args.redis_url:
        os.environ[ENV_URL] = args.redis_url
    app = load_app(args.app)
    if app.embedded and not args.embedded:
        raise SystemExit(
            f"rkit {command}: {args.app} has no Redis URL, so it would run on a private "
            f"in-process fakeredis that no other process can reach (it would never see a "
            f"job). Set {ENV_URL} (and {ENV_QUEUE_URL} for a separate queue Redis), pass "
            f"--redis-url redis://host:6379/0, or construct App('redis://...'). "
            f"--embedded runs on the private fakeredis anyway."
        )
    print(start_line(command, args.app, app), file=sys.stderr, flush=True)
    return app


def load_app(path: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"rkit: APP must look like 'package.module:app', got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"rkit: cannot import {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, App):
        raise SystemExit(f"rkit: {path!r} is not an rkit.App (got {type(obj).__name__})")
    return obj


def start_embedded_redis(port: int = 0) -> tuple[str, Any]:
    """Serve an in-process fakeredis on loopback; returns (url, server).

    fakeredis' TCP handler closes the connection after any error reply (NOSCRIPT
    included, which EVALSHA relies on); our handler answers the error and keeps the
    connection, as a real server does.
    """
    import redis.exceptions
    from fakeredis import TcpFakeServer
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler

    class KeepAliveHandler(TCPFakeRequestHandler):
        def setup(self) -> None:
            super().setup()
            conn = self.current_client
            read = conn.read_response

            def read_response(*args: Any, **kwargs: Any) -> Any:
                try:
                    return read(*args, **kwargs)
                except redis.exceptions.ResponseError as exc:
                    return exc  # sent as an error reply

            conn.read_response = read_response  # type: ignore[method-assign]

    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    server.RequestHandlerClass = KeepAliveHandler
    thread = threading.Thread(target=server.serve_forever, name="rkit-fakeredis", daemon=True)
    thread.start()
    return f"redis://127.0.0.1:{server.server_address[1]}/0", server


async def _serve_api(api: Any, host: str, port: int) -> tuple[Any, asyncio.Task[None], int]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit(f"rkit: admin API could not start on {host}:{port}")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, int(bound)


async def _dev(args: argparse.Namespace) -> int:
    from rkit.api import create_api
    from rkit.workers import run_worker

    app = load_app(args.app)
    token = os.environ.get("RKIT_ADMIN_TOKEN") or secrets.token_urlsafe(18)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    worker = asyncio.create_task(run_worker(app, handle_signals=False))
    server, api_task, port = await _serve_api(
        create_api(app, admin_token=token), args.host, args.port
    )
    base = f"http://{args.host}:{port}"
    print(start_line("dev", args.app, app))
    print(f"rkit dev: worker running, admin API at {base} (docs: {base}/docs)")
    print(f"rkit dev: admin token {token}")
    print(f"  curl {base}/health")
    print(f"  curl -H 'Authorization: Bearer {token}' {base}/rate-limits")
    module = importlib.import_module(args.app.split(":")[0])
    demo = getattr(module, "demo", None)
    code = 0
    try:
        if demo is not None and not args.no_demo:
            print("rkit dev: running the app's demo()")
            for line in await demo(app):
                print(f"  {line}")
        if args.exit_after_demo:
            return code
        print("rkit dev: press Ctrl-C to stop")
        # uvicorn may take the signal itself and stop: either way we shut down
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, api_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        return code
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await api_task
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await app.aclose()


def cmd_dev(args: argparse.Namespace) -> int:
    try:
        import fakeredis  # noqa: F401
        import uvicorn  # noqa: F401

        import rkit.api  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"rkit dev needs the dev extra (fakeredis, FastAPI, uvicorn): "
            f"pip install 'rkit[dev]' ({exc})"
        ) from None
    embedded = None
    if not (args.redis_url or os.environ.get(ENV_URL)):
        url, embedded = start_embedded_redis(args.redis_port)
        os.environ[ENV_URL] = url
        print(f"rkit dev: no {ENV_URL} given: serving embedded fakeredis at {url}")
    else:
        os.environ[ENV_URL] = args.redis_url or os.environ[ENV_URL]
    try:
        return asyncio.run(_dev(args))
    finally:
        if embedded is not None:
            embedded.shutdown()
            embedded.server_close()


def cmd_worker(args: argparse.Namespace) -> int:
    from rkit.workers import run_worker_blocking

    app = load_served_app("worker", args)
    overrides: dict[str, Any] = {"burst": args.burst}
    if args.max_jobs:
        overrides["max_jobs"] = args.max_jobs
    run_worker_blocking(app, **overrides)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from rkit.api import create_api
    except ImportError as exc:
        raise SystemExit(f"rkit api needs the api extra: pip install 'rkit[api]' ({exc})") from None

    app = load_served_app("api", args)
    if not os.environ.get(ENV_TOKEN):
        print(
            f"rkit api: WARNING no admin token ({ENV_TOKEN}): every admin route will refuse "
            "(403); only /health answers",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(create_api(app), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_crons_list(args: argparse.Namespace) -> int:
    """``rkit crons list APP``: every cron of a namespace with its schedule and state."""
    from rkit.crons import Crons

    app = load_served_app("crons", args)

    async def run() -> list[dict[str, Any]]:
        try:
            crons = Crons.view(app, args.namespace)
            rows, offset = [], 0
            while True:
                total, page = await crons.list_details(offset=offset, limit=500)
                rows += [d.to_dict() for d in page]
                offset += 500
                if offset >= total:
                    return rows
        finally:
            await app.aclose()

    rows = asyncio.run(run())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':<22} {'NAME':<20} {'SCHEDULE':<28} {'NEXT RUN (UTC)':<20} {'LAST':<8} FUNCTION")
    for row in rows:
        s = row["schedule"]
        sched = f"every {s['ms']:g} ms" if s["kind"] == "interval" else s["cronspec"]
        if s.get("tz"):
            sched += f" ({s['tz']})"
        nxt = "paused" if row["paused"] else _utc(row["next_run_ms"])
        print(
            f"{row['id']:<22} {row['name'] or '-':<20} {sched:<28} {nxt:<20} "
            f"{row['last_status'] or '-':<8} {row['function']}"
        )
    print(f"{len(rows)} cron(s) in namespace {args.namespace!r}")
    return 0


def _utc(ms: float | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _served(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", help="APP import path, e.g. myservice.tasks:app")
    p.add_argument("--redis-url", default=None, help=f"the Redis to use (default: {ENV_URL})")
    p.add_argument(
        "--embedded",
        action="store_true",
        help="allow an App without a Redis URL (a private in-process fakeredis)",
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    """``rkit migrate APP NAME``: run a migration of APP's ``Migrations`` and show its
    progress (it runs on the App's workers, or here with ``--here``)."""
    from rkit.migrations import Migrations
    from rkit.migrations.progress import migrate_command

    app = load_served_app("migrate", args)
    m = app.components.get("migrations", args.instance)
    if not isinstance(m, Migrations):
        raise SystemExit(f"rkit: {args.app} has no Migrations named {args.instance!r}")

    async def go() -> int:
        try:
            return await migrate_command(
                m,
                args.name,
                dry_run=args.dry_run,
                reset=args.reset,
                batch_size=args.batch_size,
                here=args.here,
            )
        finally:
            await app.aclose()

    return asyncio.run(go())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser(
        "dev", help="run an app with a worker and the admin API (embedded Redis by default)"
    )
    dev.add_argument(
        "app", nargs="?", default=DEFAULT_APP, help=f"APP import path (default {DEFAULT_APP})"
    )
    dev.add_argument(
        "--redis-url",
        default=None,
        help=f"use this Redis instead of the embedded one (or {ENV_URL})",
    )
    dev.add_argument(
        "--redis-port",
        type=int,
        default=0,
        help="port of the embedded fakeredis (default: any free)",
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000, help="admin API port (0 = any free)")
    dev.add_argument("--no-demo", action="store_true", help="do not run the app's demo()")
    dev.add_argument(
        "--exit-after-demo", action="store_true", help="stop after demo() (smoke test)"
    )
    dev.set_defaults(func=cmd_dev)

    worker = sub.add_parser("worker", help="run an arq worker for APP")
    _served(worker)
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--max-jobs", type=int, default=0, help="concurrent jobs (default 50)")
    worker.set_defaults(func=cmd_worker)

    api = sub.add_parser("api", help="serve the admin API for APP (token: RKIT_ADMIN_TOKEN)")
    _served(api)
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(func=cmd_api)

    crons = sub.add_parser("crons", help="inspect the dynamic crons of APP")
    crons_sub = crons.add_subparsers(dest="crons_command", required=True)
    crons_list = crons_sub.add_parser("list", help="list the crons of a namespace")
    _served(crons_list)
    crons_list.add_argument("--namespace", default="default", help="crons namespace")
    crons_list.add_argument("--json", action="store_true", help="print JSON")
    crons_list.set_defaults(func=cmd_crons_list)

    mig = sub.add_parser("migrate", help="run a migration of APP and show its progress")
    _served(mig)
    mig.add_argument("name", help="the migration's name")
    mig.add_argument("--dry-run", action="store_true", help="run one batch, write nothing")
    mig.add_argument("--reset", action="store_true", help="start over from the beginning")
    mig.add_argument("--batch-size", type=int, default=None)
    mig.add_argument("--here", action="store_true", help="run the batches in this process")
    mig.add_argument("--instance", default="default", help="the Migrations instance name")
    mig.set_defaults(func=cmd_migrate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("RKIT_LOG_LEVEL", "WARNING"))
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
