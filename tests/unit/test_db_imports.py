"""The wall around db/: it knows nothing of ML, Kafka or the ingester."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("torch", "models", "stream", "ingest", "broker", "faust", "aiokafka")


def test_db_imports_nothing_of_ml_kafka_or_ingest() -> None:
    script = (
        "import sys\n"
        "import db.embedded, db.engine, db.migrate, db.repository, db.tables\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
