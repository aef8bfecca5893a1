"""Command line: serve (the default), token USER, and submit FILE.pdf (the client)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from . import datadir, gctune, logs, pgmove, usercli
from .app import create_app
from .auth import issue_token, signing_secret
from .authpg import blocking_secret
from .config import PREFIX, Settings, convert, field_docs, is_secret
from .errors import JobServerError, Refused, error_line
from .plugins import StartupError
from .web.accesslog import AccessLog
from .web.guard import GuardedSite, handler_args, raise_fd_limit
from .web.keys import GUARD


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
        "--jobs", action="append", default=None, metavar="MODULE",
        help="load the job types of this module or entry point; repeatable (JOBSERVER_JOBS, "
        "comma-separated)",
    )  # fmt: skip
    parser.add_argument(
        "--shutdown-grace-seconds",
        type=float,
        help="wait for running jobs at shutdown (JOBSERVER_SHUTDOWN_GRACE_SECONDS)",
    )
    parser.add_argument(
        "--open-signin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sign-in by name alone, so anyone can be anyone (JOBSERVER_OPEN_SIGNIN; default: "
        "only while the server is local-only and has no accounts or JWKS; see docs/security.md)",
    )


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    """A ``--flag`` for every setting not declared above, typed and described from Settings."""
    taken = {action.dest for action in parser._actions}
    docs = field_docs()
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        if f.name in taken or is_secret(f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        shown = "unset" if default is None else shown
        text = f"{docs.get(f.name, '')} ({PREFIX}{f.name.upper()}, {shown!s})".replace("%", "%%")
        if f.type == "bool":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(
                flag, type=_converter(f.name), default=None, metavar=f.name.upper(), help=text
            )


def _converter(name: str) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        return convert(name, raw)

    parse.__name__ = name  # argparse names the setting in its error message
    return parse


def _submit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.pdf")
    parser.add_argument(
        "--server", default=os.environ.get("JOBSERVER_URL", "http://127.0.0.1:8080"),
        help="the server's URL (JOBSERVER_URL, http://127.0.0.1:8080)",
    )  # fmt: skip
    parser.add_argument(
        "--user", default=os.environ.get("JOBSERVER_USER", ""),
        help="sign in by this name (JOBSERVER_USER); needs open sign-in",
    )  # fmt: skip
    parser.add_argument(
        "--token", default=os.environ.get("JOBSERVER_TOKEN", ""),
        help="a bearer token instead, e.g. from `server.py token USER` (JOBSERVER_TOKEN)",
    )  # fmt: skip
    parser.add_argument(
        "--json", dest="json_lines", action="store_true",
        help="print each event as a JSON line instead of progress bars",
    )  # fmt: skip


def _submit(args: argparse.Namespace) -> int:
    import asyncio

    from .submit import Options, submit

    options = Options(files=args.files, server=args.server, token=args.token, user=args.user,
                      json_lines=args.json_lines)  # fmt: skip
    return asyncio.run(submit(options))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(description="jobserver")  # prog: server.py or jobserver
    _serve_args(root)
    _setting_flags(root)
    sub = root.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server (the default)")
    _serve_args(serve)
    _setting_flags(serve)
    token = sub.add_parser("token", help="print a token for USER, for apps that integrate")
    token.add_argument("user")
    token.add_argument("--data-dir", type=Path)
    _submit_args(sub.add_parser("submit", help="upload PDFs and follow their jobs to the notes"))
    usercli.add_parser(sub)
    move = sub.add_parser(
        "migrate-to-postgres",
        help="move a SQLite data dir (jobs, events, accounts, sessions, notes, uploads) into "
        "the PostgreSQL of JOBSERVER_DATABASE_URL (the server must be stopped)",
    )
    move.add_argument("--data-dir", type=Path, help="data folder (JOBSERVER_DATA_DIR, ./data)")
    move.add_argument("--replace", action="store_true",
                      help="empty the schema first when it holds data (all of it is lost)")
    _keep_root_flags(root, {a.dest for a in root._actions if a.option_strings})
    return root


def _keep_root_flags(parser: argparse.ArgumentParser, root: set[str]) -> None:
    """A root flag given before the command (``--data-dir X user add NAME``) counts.

    argparse lets a subcommand's own defaults overwrite what the root parsed, so the root's
    flags that a subcommand repeats default there to "absent": a value given on either side
    of the command is kept.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                for option in child._actions:
                    if option.dest in root and option.dest != "help":
                        option.default = argparse.SUPPRESS
                _keep_root_flags(child, root)


def settings_from(args: argparse.Namespace) -> Settings:
    names = [f.name for f in dataclasses.fields(Settings)]
    overrides = {name: getattr(args, name, None) for name in names}
    repeated = overrides.get("jobs")
    if repeated is not None:  # each repeated flag may itself be comma-separated
        overrides["jobs"] = tuple(n for raw in repeated for n in convert("jobs", raw))
    return Settings.from_env(os.environ, **overrides)


def token_secret(settings: Settings) -> str:
    """``auth.signing_secret``, read from outside any event loop."""
    return signing_secret(
        settings, lambda: blocking_secret(settings.database_url, settings.database_schema)
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "submit":
        return _submit(args)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        return _refused(Refused(str(exc), "INVALID_SETTING"), 2)
    if args.command == "user":
        return usercli.run(args, settings, sys.stdin, sys.stdout)
    if args.command == "migrate-to-postgres":
        return pgmove.run(settings, args.replace, sys.stdout, sys.stderr)
    if args.command == "token":
        try:  # a bad name is a usage error, said in one line with its code, not a traceback
            secret = token_secret(settings)
            print(issue_token(secret, args.user, settings.token_ttl_seconds))
        except JobServerError as exc:
            return _refused(exc, 2)
        return 0
    try:
        datadir.prepare(settings.data_dir)  # one clear line, not a traceback, when it cannot be
        secret = token_secret(settings)
    except JobServerError as exc:
        return _refused(exc, 1)
    hidden = [secret, *(str(getattr(settings, f.name)) for f in dataclasses.fields(Settings)
                        if is_secret(f.name))]  # fmt: skip
    logs.configure(settings.log_format, settings.log_level, hidden)
    try:
        # `--jobs mytasks` finds the mytasks.py of the folder the server was started in, as
        # `python -m` would (pip's `jobserver` script and `python path/to/server.py` do not
        # look there); appended, so it shadows no installed module. Worker processes get
        # this sys.path too.
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        app = create_app(settings)
    except StartupError as exc:
        return _refused(Refused(str(exc), "LOAD_FAILED"), 2)
    try:
        asyncio.run(serve(app, settings))
    except JobServerError as exc:  # the store cannot open, the port is taken (ListenError)
        return _refused(exc, 1)
    return 0


def _refused(error: JobServerError, status: int) -> int:
    """Why the command cannot go on, in one line (``error_line``); the exit status."""
    print(error_line(error), file=sys.stderr)
    return status


class ListenError(Refused):
    """The server cannot open its listening socket; the message says where and why."""

    code = "CANNOT_LISTEN"


async def serve(app: web.Application, settings: Settings) -> None:
    """Run until Ctrl-C or SIGTERM, then shut down in reverse order of start-up."""
    nofile = raise_fd_limit()
    runner = web.AppRunner(app, handle_signals=False, access_log_class=AccessLog,
                           shutdown_timeout=settings.shutdown_grace_seconds + 5)
    await runner.setup()
    guard = app[GUARD]
    guard.configure(nofile)  # connections capped below the descriptor limit (web/guard.py)
    # What aiohttp's web.Server gives each connection (create_app set the handler_args).
    handler_kwargs = {"access_log_class": AccessLog, **handler_args(settings)}
    site = GuardedSite(runner, settings.host, settings.port, guard, handler_kwargs)
    try:
        await site.start()
    except OSError as exc:  # the port is taken, the host is not ours: one line, then exit
        await runner.cleanup()  # the workers it started would keep the process alive
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is in use (another server there? choose another --port)"
        elif exc.errno and exc.errno > 0:
            reason = os.strerror(exc.errno)
        else:  # a host name that does not resolve
            reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {settings.host}:{settings.port}: {reason}") from None
    host, port = runner.addresses[0][:2]  # the real port, also when --port 0
    gctune.tune()  # start-up is done: freeze what it made
    print(f"jobserver listening on http://{host}:{port}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        print("jobserver shutting down", flush=True)
    finally:
        await runner.cleanup()
