"""The model lifecycle on the command line: train, evaluate, predict, models, retrain, relabel.

Files live in the registry directory (models/registry.py); which version is promoted lives
in PostgreSQL (the ``models`` table), so every worker, on any machine, agrees on it.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.argtypes import positive_int
from cli.dbcall import run_db
from cli.services import services
from core.errors import ConfigError, ModelNotFoundError
from core.schemas import Paper
from core.settings import Settings
from db import migrate, repository
from db.repository import ModelRow
from stream.model_holder import NO_MODEL_HELP

if TYPE_CHECKING:
    from training.train import TrainResult

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cli import cmd_lifecycle

    train = sub.add_parser("train", help="train a model from a Kaggle-format snapshot")
    add_training_options(train)
    train.add_argument("--promote", action="store_true", help="promote even if one is promoted")
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser("evaluate", help="metrics of a model on Kaggle-format files")
    evaluate.add_argument("--snapshot", type=Path, nargs="+", required=True, help=SNAPSHOT_HELP)
    evaluate.add_argument("--model", default=None, help="version (default: the promoted one)")
    evaluate.add_argument("--max-samples", type=positive_int, default=None)
    evaluate.add_argument(
        "--holdout",
        action="store_true",
        help="score only the fixed evaluation holdout (1 paper in 20 by id hash; "
        "models trained with --exclude-holdout never saw them)",
    )
    evaluate.add_argument(
        "--split",
        choices=["test", "val"],
        default=None,
        dest="only_split",
        help="score only this part of the files' stratified split, cut as `train --seed S` "
        "cuts it (for example the sample's test split)",
    )
    evaluate.add_argument("--seed", type=int, default=13, help="with --split (default 13)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=_evaluate)

    predict = sub.add_parser("predict", help="classify one title + abstract")
    predict.add_argument("--title", required=True)
    predict.add_argument("--abstract", default="")
    predict.add_argument("--model", default=None, help="version (default: the promoted one)")
    predict.add_argument("--top-k", type=positive_int, default=5)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=_predict)

    models = sub.add_parser("models", help="the model registry")
    actions = models.add_subparsers(dest="models_command", required=True)
    actions.add_parser("list", help="every registered version").set_defaults(handler=_list)
    show = actions.add_parser("show", help="config, metrics and decision of one version")
    show.add_argument("version", nargs="?", default=None, help="default: the promoted one")
    show.set_defaults(handler=_show)
    promote = actions.add_parser("promote", help="make VERSION the model every worker uses")
    promote.add_argument("version")
    promote.set_defaults(handler=_promote)

    cmd_lifecycle.add_commands(sub)


SNAPSHOT_HELP = (
    "Kaggle JSON-lines files (.gz ok) or directories of them, read as one stream "
    "(for example ../shared/data/arxiv-corpus/)"
)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot", type=Path, nargs="+", required=True, help=SNAPSHOT_HELP)
    parser.add_argument(
        "--head",
        choices=["auto", "logreg", "mlp", "logreg-knn", "softmax", "finetune"],
        default="auto",
        help="heads over embeddings, or finetune: a transformer trained end to end (for a GPU)",
    )
    parser.add_argument(
        "--base-model",
        default=None,
        help="with --head finetune: hub name or local directory "
        "(default allenai/scibert_scivocab_uncased)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="with --head finetune: at most this many (default 4)",
    )
    parser.add_argument("--max-samples", type=positive_int, default=None)
    parser.add_argument("--split", choices=["stratified", "time"], default="stratified")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--variant", choices=["auto", "fp32", "bf16", "fp16", "ov-bf16", "ov-fp32"], default="auto"
    )
    parser.add_argument(
        "--tune",
        type=int,
        default=0,
        metavar="N",
        help="run N Optuna trials over the softmax head on the validation split first",
    )
    parser.add_argument(
        "--no-text-head",
        dest="text_head",
        action="store_false",
        help="do not fit the TF-IDF text head (embeddings only)",
    )
    parser.add_argument(
        "--exclude-holdout",
        action="store_true",
        help="never train on the fixed evaluation holdout (see `evaluate --holdout`)",
    )


def promoted_version(database_url: str) -> str | None:
    row = run_db(database_url, repository.promoted_model)
    return row.version if row else None


def _resolve_version(database_url: str, version: str | None) -> str:
    if version:
        return version
    found = promoted_version(database_url)
    if found is None:
        raise ModelNotFoundError(NO_MODEL_HELP)
    return found


def train_and_register(
    settings: Settings,
    database_url: str,
    *,
    snapshot: Path | list[Path],
    options: argparse.Namespace | None = None,
    force_promote: bool = False,
) -> TrainResult:
    """Train, write the bundle, register it; promote it if none is promoted yet (or asked)."""
    opts = options or argparse.Namespace()
    now = utc_now()
    max_samples = getattr(opts, "max_samples", None)
    result = run_trainer(settings, snapshot, opts, now=now, max_samples=max_samples)
    register(settings, database_url, result, now=now, force_promote=force_promote)
    return result


def run_trainer(
    settings: Settings,
    papers: Path | list[Path] | list[Paper],
    opts: argparse.Namespace,
    *,
    now: datetime,
    max_samples: int | None,
) -> TrainResult:
    """The trainer ``--head`` asks for: heads over embeddings, or a fine-tuned encoder."""
    base_model, epochs = getattr(opts, "base_model", None), getattr(opts, "epochs", None)
    common: dict[str, Any] = {
        "models_dir": settings.models_dir,
        "seed": getattr(opts, "seed", 13),
        "split": getattr(opts, "split", "stratified"),
        "max_samples": max_samples,
        "device": settings.device,
        "now": now,
    }
    if getattr(opts, "head", "auto") == "finetune":
        from training.finetune import DEFAULT_BASE_MODEL, finetune_model

        if epochs:
            common["epochs"] = epochs
        return finetune_model(papers, base_model=base_model or DEFAULT_BASE_MODEL, **common)
    if base_model or epochs:
        raise ConfigError("--base-model and --epochs go with --head finetune")
    from training.train import train_model

    return train_model(
        papers,
        embedder_name=settings.embedder_model,
        head=getattr(opts, "head", "auto"),
        variant=getattr(opts, "variant", "auto"),
        cache_dir=settings.embedding_cache_dir,
        text_head=getattr(opts, "text_head", True),
        tune=getattr(opts, "tune", 0),
        exclude_holdout=getattr(opts, "exclude_holdout", False),
        **common,
    )


def register(
    settings: Settings,
    database_url: str,
    result: TrainResult,
    *,
    now: datetime,
    force_promote: bool = False,
    allow_first: bool = True,
) -> bool:
    """Add a trained bundle to the ``models`` table; returns whether it was promoted.
    The first model is promoted (``allow_first``) so a fresh system can start at once."""
    promote = force_promote or (allow_first and promoted_version(database_url) is None)
    config = json.loads((result.path / "config.json").read_text())
    run_db(
        database_url,
        lambda conn: repository.register_model(
            conn,
            version=result.version,
            created_at=now,
            path=result.path.name,
            embedder=(config["embedder"] or config["encoder"])["model_id"],
            metrics=result.metrics,
            promote=promote,
        ),
    )
    state = "promoted" if promote else "registered (not promoted)"
    print(f"model {result.version} {state}: {result.path}")
    return promote


def _train(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        migrate.upgrade(found.database_url)
        train_and_register(
            settings,
            found.database_url,
            snapshot=args.snapshot,
            options=args,
            force_promote=args.promote,
        )
    return 0


def _load(settings: Settings, version: str) -> Any:
    from models.classifier import PaperClassifier
    from models.registry import version_dir

    return PaperClassifier.load(
        version_dir(settings.models_dir, version),
        device=settings.device,
        batch_size=settings.embed_batch_size,
    )


def format_metrics(metrics: dict[str, Any]) -> str:
    """The evaluate JSON as a small table for people."""
    lines = [f"{'space':<10} {'n':>6} {'acc':>6} {'macroF1':>8} {'top5':>6}"]
    for space in ("domain", "group", "archive", "category"):
        m = metrics.get(space)
        if m:
            lines.append(
                f"{space:<10} {m['n']:>6} {m['accuracy']:>6.3f} {m['macro_f1']:>8.3f} "
                f"{m['top5_accuracy']:>6.3f}"
            )
    cat = metrics.get("category") or {}
    if cat:
        lines.append(
            f"category precision@1 {cat['precision_at_1']:.3f}   "
            f"top-5 micro recall {cat['top5_micro_recall']:.3f}"
        )
    multi = metrics.get("categories")
    if multi:
        lines.append(
            f"categories (multi-label) micro F1 {multi['micro_f1']:.3f} "
            f"macro F1 {multi['macro_f1']:.3f}"
        )
    return "\n".join(lines)


def evaluate_version(settings: Settings, version: str, papers: list[Any]) -> dict[str, Any]:
    """Metrics of ``version`` on ``papers`` (embeddings through the shared cache)."""
    from models.cache import EmbeddingCache
    from training.evaluate import evaluate

    classifier = _load(settings, version)
    with EmbeddingCache(settings.embedding_cache_dir) as cache:
        metrics = evaluate(classifier, papers, cache=cache)
    metrics["model_version"] = version
    return metrics


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.snapshot import read_snapshot

    with services(settings, need_kafka=False) as found:
        version = _resolve_version(found.database_url, args.model)
    papers = select_for_evaluation(
        read_snapshot(args.snapshot), holdout=args.holdout, only_split=args.only_split,
        seed=args.seed, max_samples=args.max_samples,
    )  # fmt: skip
    if not papers:
        raise ConfigError(f"no papers to evaluate in {', '.join(map(str, args.snapshot))}")
    metrics = evaluate_version(settings, version, papers)
    print(json.dumps(metrics, indent=2) if args.json else format_metrics(metrics))
    return 0


def select_for_evaluation(
    papers: Any,
    *,
    holdout: bool = False,
    only_split: str | None = None,
    seed: int = 13,
    max_samples: int | None = None,
) -> list[Paper]:
    """The papers ``evaluate`` scores: all, the holdout only, or one part of the split that
    ``train --seed`` would cut from the same files (papers as training reads them)."""
    from training.data import read_papers, split_papers
    from training.holdout import in_holdout

    chosen = [p for p in papers if not holdout or in_holdout(p.arxiv_id)]
    if only_split is not None:
        data = read_papers(chosen, max_samples=None, show=False)
        parts = split_papers(data, "stratified", val_fraction=0.1, test_fraction=0.1, seed=seed)
        rows = parts.test if only_split == "test" else parts.val
        chosen = [data.papers[i] for i in rows]
    return chosen[:max_samples] if max_samples is not None else chosen


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from core.schemas import Paper

    if not (args.title.strip() or args.abstract.strip()):
        raise ConfigError("predict needs a non-empty --title or --abstract")
    for name in ("title", "abstract"):
        try:
            getattr(args, name).encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"--{name} is not valid UTF-8 text") from None

    with services(settings, need_kafka=False) as found:
        version = _resolve_version(found.database_url, args.model)
    classifier = _load(settings, version)
    text = Paper(
        arxiv_id="0000.00000",
        version=1,
        title=args.title,
        abstract=args.abstract,
        categories=[],
        source="snapshot",
    ).text
    (prediction,) = classifier.predict_texts([text], top_k=args.top_k)
    if args.json:
        print(
            json.dumps(
                {
                    "model_version": version,
                    "domain": vars(prediction.domain),
                    "category": vars(prediction.category),
                    "domain_top_k": [vars(s) for s in prediction.domain_top_k],
                    "category_top_k": [vars(s) for s in prediction.category_top_k],
                },
                indent=2,
            )
        )
        return 0
    print(f"model {version}")
    print(f"domain    {prediction.domain.label} ({prediction.domain.score:.3f})")
    for rank, scored in enumerate(prediction.category_top_k, 1):
        print(f"  {rank}. {scored.label:<20} {scored.score:.3f}")
    return 0


def _row_line(row: ModelRow) -> str:
    metrics = (row.metrics or {}).get("test", row.metrics or {})
    domain = metrics.get("domain", {}).get("accuracy")
    p_at_1 = metrics.get("category", {}).get("precision_at_1")
    shown = f"domain acc {domain:.3f}" if isinstance(domain, float) else "domain acc ?"
    shown += f"  category P@1 {p_at_1:.3f}" if isinstance(p_at_1, float) else ""
    mark = "*" if row.promoted else " "
    return f"{mark} {row.version}  {row.created_at:%Y-%m-%d %H:%M}  {shown}"


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        rows = run_db(found.database_url, repository.list_models)
    if not rows:
        print("no models registered. " + NO_MODEL_HELP)
        return 0
    for row in rows:
        print(_row_line(row))
    print("(* = promoted)")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        version = _resolve_version(found.database_url, args.version)
        row = run_db(found.database_url, lambda conn: repository.get_model(conn, version))
    if row is None:
        raise ModelNotFoundError(f"no model version {version!r} registered")
    config_path = settings.models_dir / row.path / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else None
    print(
        json.dumps(
            {
                "version": row.version,
                "promoted": row.promoted,
                "created_at": row.created_at,
                "promoted_at": row.promoted_at,
                "path": str(settings.models_dir / row.path),
                "embedder": row.embedder,
                "metrics": row.metrics,
                "decision": row.decision,
                "config": config,
            },
            indent=2,
            default=str,
        )
    )
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import version_dir

    if not (version_dir(settings.models_dir, args.version) / "config.json").is_file():
        raise ModelNotFoundError(f"no model files for {args.version} in {settings.models_dir}")
    with services(settings, need_kafka=False) as found:
        run_db(
            found.database_url,
            lambda conn: repository.promote_model(conn, args.version, now=utc_now()),
        )
    print(f"promoted {args.version}; running workers switch at their next batch")
    return 0
