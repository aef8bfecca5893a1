"""``server.py user ...``: password accounts, sessions, and merging or renaming stored users."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from . import pguserdata
from .authdb import AuthDb
from .authpg import BlockingPgAuth
from .config import Settings
from .errors import JobServerError, Refused, error_line
from .passwords import hash_password
from .userdata import has_data, move, owned, unreachable_in
from .userids import check_user_id


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="data folder (JOBSERVER_DATA_DIR, ./data)")
    user = sub.add_parser("user", help="password accounts and stored users (see docs/security.md)")
    ops = user.add_subparsers(dest="op", required=True)

    def op(name: str, help: str) -> argparse.ArgumentParser:
        return ops.add_parser(name, help=help, parents=[common])

    add = op("add", "make an account; the password is asked for, or read "
                         "from standard input when that is not a terminal")  # fmt: skip
    add.add_argument("name")
    passwd = op("passwd", "set a new password (ends the account's sessions)")
    passwd.add_argument("name")
    remove = op("remove", "delete an account and end its sessions "
                            "(its jobs and notes stay)")  # fmt: skip
    remove.add_argument("name")
    op("list", "accounts, their open sessions, and stored users to merge")
    signout = op("signout", "end every session of a user")
    signout.add_argument("name")
    merge = op("merge", "give every job and note of OLD to NEW "
                           "(the server must be stopped)")  # fmt: skip
    merge.add_argument("old")
    merge.add_argument("new")
    rename = op("rename", "rename OLD to NEW, who must have no data yet "
                            "(the server must be stopped)")  # fmt: skip
    rename.add_argument("old")
    rename.add_argument("new")


def read_password(stdin: TextIO, ask: Callable[[str], str] = getpass.getpass) -> str:
    """Asked twice on a terminal; otherwise the first line of standard input."""
    if stdin.isatty():
        first = ask("Password: ")
        if ask("Again: ") != first:
            raise Refused("the two passwords differ", "PASSWORD_MISMATCH")
        return first
    return stdin.readline().rstrip("\r\n")


def _name(raw: str) -> str:
    return check_user_id(raw, "the name")


def _hash(stdin: TextIO) -> str:
    return hash_password(read_password(stdin))


def run(args: argparse.Namespace, settings: Settings, stdin: TextIO, out: TextIO) -> int:
    """Carry out ``server.py user OP``; 0 when done, 1 (with a message on stderr) if refused."""
    db: AuthDb | BlockingPgAuth
    try:
        db = (BlockingPgAuth(settings.database_url, settings.database_schema)
              if settings.database_url else AuthDb(settings.data_dir))  # fmt: skip
    except JobServerError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    try:
        _run(args, settings, db, stdin, out)
    except JobServerError as exc:  # refused (a bad name, a running server), one line each
        print(error_line(exc), file=sys.stderr)
        return 1
    finally:
        db.close()
    return 0


def _run(args: argparse.Namespace, settings: Settings, db: AuthDb | BlockingPgAuth,
         stdin: TextIO, out: TextIO) -> None:  # fmt: skip
    op = args.op
    if op == "add":
        name = _name(args.name)
        if db.password_hash(name) is not None:
            raise Refused(f"{name} has an account already (user passwd {name} changes it)",
                          "ACCOUNT_EXISTS")  # fmt: skip
        db.add_account(name, _hash(stdin))
        said = "" if name == args.name else f" (user ids are normalised: {args.name!r})"
        print(f"added account {name}{said}", file=out)
    elif op == "passwd":
        name = _name(args.name)
        if not db.set_password(name, _hash(stdin)):
            raise Refused(f"there is no account {name}", "NO_SUCH_ACCOUNT")
        ended = len(db.revoke_user(name))
        print(f"changed the password of {name}; ended {ended} session(s)", file=out)
    elif op == "remove":
        name = _name(args.name)
        if not db.remove_account(name):
            raise Refused(f"there is no account {name}", "NO_SUCH_ACCOUNT")
        print(f"removed account {name} and ended its sessions; its jobs and notes stay",
              file=out)  # fmt: skip
    elif op == "signout":
        name = _name(args.name)
        print(f"ended {len(db.revoke_user(name))} session(s) of {name}", file=out)
    elif op == "list":
        _list(settings, db, out)
    elif op in ("merge", "rename"):
        _move(op, args.old, _name(args.new), settings, db, out)


def _list(settings: Settings, db: AuthDb | BlockingPgAuth, out: TextIO) -> None:
    accounts = db.accounts()
    if not accounts:
        print("no accounts (python server.py user add NAME makes one)", file=out)
    for account in accounts:
        changed = time.strftime("%Y-%m-%d %H:%M", time.localtime(account.changed_at))
        sessions = len(db.sessions_of(account.user_id))
        print(f"{account.user_id}\tpassword set {changed}\t{sessions} open session(s)", file=out)
    found = (asyncio.run(pguserdata.unreachable_in(settings.database_url,
                                                   settings.database_schema))
             if settings.database_url else unreachable_in(settings.db_path))  # fmt: skip
    for normal, ids in found.items():
        target = normal or "(not allowed: rename)"
        print(f"stored users to merge into {target}: {', '.join(ids)}", file=out)


def _move(op: str, old: str, new: str, settings: Settings, db: AuthDb | BlockingPgAuth,
          out: TextIO) -> None:  # fmt: skip
    if old == new:
        raise Refused(f"{old} is {new} already", "SAME_USER")
    if settings.database_url:
        moved = asyncio.run(pguserdata.move_user(
            settings.database_url, settings.database_schema, old, new, rename=op == "rename"))
    else:
        moved = _move_sqlite(op, old, new, settings, db)
    counts = ", ".join(f"{n} {t}" for t, n in moved.items() if n)
    done = f"merged {old!r} into {new!r}" if op == "merge" else f"renamed {old!r} to {new!r}"
    print(f"{done}: {counts}", file=out)


def _move_sqlite(op: str, old: str, new: str, settings: Settings,
                 db: AuthDb | BlockingPgAuth) -> dict[str, int]:  # fmt: skip
    if not settings.db_path.exists():
        raise Refused(f"there is no job store at {settings.db_path}", "NO_JOB_STORE")
    with owned(settings.db_path) as conn:
        if not has_data(conn, old):
            raise Refused(f"no jobs or notes belong to {old!r}", "NO_USER_DATA")
        if op == "rename" and has_data(conn, new):
            raise Refused(f"{new} has jobs or notes already: merge {old!r} into it instead",
                          "USER_HAS_DATA")  # fmt: skip
        moved = move(conn, old, new)
    db.rename_account(old, new)
    return moved
