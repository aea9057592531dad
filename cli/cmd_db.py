"""``arxiv-stream db upgrade|downgrade|current|url``."""

from __future__ import annotations

import argparse
import sys

from cli.services import read_running_state, services
from core.settings import Settings
from db import migrate
from db.engine import psql_url


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database schema and connection")
    actions = db.add_subparsers(dest="db_command", required=True)
    up = actions.add_parser("upgrade", help="apply migrations (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_upgrade)
    down = actions.add_parser("downgrade", help="revert migrations to REVISION")
    down.add_argument("revision")
    down.set_defaults(handler=_downgrade)
    actions.add_parser("current", help="print the current revision").set_defaults(handler=_current)
    actions.add_parser("url", help="print a URL psql accepts").set_defaults(handler=_url)


def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        migrate.upgrade(found.database_url, args.revision)
        print(f"database at {migrate.current(found.database_url)}")
    return 0


def _downgrade(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        migrate.downgrade(found.database_url, args.revision)
        print(f"database at {migrate.current(found.database_url)}")
    return 0


def _current(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        print(migrate.current(found.database_url) or "(empty)")
    return 0


def _url(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        print(psql_url(found.database_url))
    if settings.database_url_value() is None and read_running_state(settings) is None:
        # The embedded server lives as long as a process holds it; we just let go of it.
        print(
            "note: no `arxiv-stream up` is running, so the embedded PostgreSQL is stopped; "
            "start `up` first, then use this URL",
            file=sys.stderr,
        )
    return 0
