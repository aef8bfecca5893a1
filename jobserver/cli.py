"""Command line: serve (the default) and token USER."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from .app import create_app
from .auth import issue_token, load_secret
from .config import Settings


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (JOBSERVER_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (JOBSERVER_PORT, 8080)")
    parser.add_argument("--data-dir", type=Path, help="data folder (JOBSERVER_DATA_DIR, ./data)")
    parser.add_argument(
        "--concurrency", type=int, help="jobs run at once (JOBSERVER_CONCURRENCY, 8)"
    )
    parser.add_argument(
        "--demo-jobs",
        action="store_true",
        default=None,
        help="enable the demo.* job types (JOBSERVER_DEMO_JOBS)",
    )
    parser.add_argument(
        "--shutdown-grace-seconds",
        type=float,
        help="wait for running jobs at shutdown (JOBSERVER_SHUTDOWN_GRACE_SECONDS)",
    )
    parser.add_argument(
        "--no-open-signin",
        dest="open_signin",
        action="store_false",
        default=None,
        help="turn off sign-in by name (JOBSERVER_OPEN_SIGNIN=0)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="server.py", description="jobserver")
    _serve_args(root)
    sub = root.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server (the default)")
    _serve_args(serve)
    token = sub.add_parser("token", help="print a token for USER, for apps that integrate")
    token.add_argument("user")
    token.add_argument("--data-dir", type=Path)
    return root


def settings_from(args: argparse.Namespace) -> Settings:
    names = (
        "host",
        "port",
        "data_dir",
        "concurrency",
        "demo_jobs",
        "shutdown_grace_seconds",
        "open_signin",
    )
    overrides = {name: getattr(args, name, None) for name in names}
    return Settings.from_env(os.environ, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        secret = load_secret(settings.secret, settings.data_dir)
        print(issue_token(secret, args.user, settings.token_ttl_seconds))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)

    def announce(_: object) -> None:
        print(f"jobserver listening on http://{settings.host}:{settings.port}/", flush=True)

    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=announce,
        shutdown_timeout=settings.shutdown_grace_seconds + 5,
    )
    return 0
