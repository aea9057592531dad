"""Optional experiment tracking: with ``MLFLOW_TRACKING_URI`` set, every trained model version
becomes one MLflow run: its parameters, its metrics flattened (``test.domain.accuracy``) and
the bundle directory as artifacts (under ``bundle/``).

    MLFLOW_TRACKING_URI=http://mlflow:5000 arxiv-stream train --snapshot F
    MLFLOW_TRACKING_URI=sqlite:///mlflow.db arxiv-stream train --snapshot F   # local; artifacts
                                                                  # go to ./mlruns by default
``MLFLOW_EXPERIMENT_NAME`` picks the experiment (MLflow reads it itself). Unset URI: nothing
happens and mlflow is never imported. Set, but mlflow missing: one WARNING saying how to
install it. Tracking never fails training: it runs after the bundle is published and before
the CLI registers it, so raising here would leave a published bundle that no table lists.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'arxiv-stream[mlflow]'"
_NOT_IN_A_NAME = re.compile(r"[^\w\-. /]")  # MLflow metric names: alphanumerics and _-. /


def track_run(
    params: Mapping[str, Any], metrics: Mapping[str, Any], artifacts_dir: Path
) -> str | None:
    """Log one run to MLflow if ``MLFLOW_TRACKING_URI`` is set; returns its run id or None."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    try:
        import mlflow
    except ImportError:
        log.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed: %s", INSTALL_HINT)
        return None
    try:
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(run_name=str(params.get("version") or "")) as run:
            mlflow.log_params(dict(params))
            mlflow.log_metrics(flatten_metrics(metrics))
            mlflow.log_artifacts(str(artifacts_dir), artifact_path="bundle")
    except Exception as exc:  # any tracking failure: see the module docstring
        log.warning("MLflow tracking at %s failed, model kept untracked: %s", uri, exc)
        return None
    log.info("tracked as MLflow run %s at %s", run.info.run_id, uri)
    return str(run.info.run_id)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number in a nested dict as ``a.b.c`` -> float (booleans, strings, None dropped)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = prefix + _NOT_IN_A_NAME.sub("_", str(key))
        if isinstance(value, Mapping):
            out |= flatten_metrics(value, prefix=f"{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
