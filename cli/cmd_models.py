"""``arxiv-stream train | evaluate | predict | models list|show|promote``: parse, call
lifecycle/, print. Files live in the registry directory; which version is promoted lives in
PostgreSQL, so every worker, on any machine, agrees on it (lifecycle.registry)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.argtypes import positive_int
from cli.services import services
from core.clock import utc_now
from core.errors import ConfigError
from core.schemas import model_text
from core.settings import Settings
from db import migrate
from db.repository import ModelRow
from lifecycle.registry import NO_MODEL_HELP, Registry
from lifecycle.train import DEFAULTS, TRAINER_HEADS, Trained, TrainOptions, train_and_register
from models.variants import VARIANTS

SNAPSHOT_HELP = (
    "Kaggle JSON-lines files (.gz ok) or directories of them, read as one stream "
    "(for example ../shared/data/arxiv-corpus/)"
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    evaluate.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help=f"with --split (default {DEFAULTS.seed})"
    )
    evaluate.add_argument(
        "--unseen",
        action="store_true",
        help="score only papers the model did not train on (its train and validation ids); "
        "without it, a warning says how many it did",
    )
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


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The flags of lifecycle.train.TrainOptions; defaults come from there."""
    d = DEFAULTS
    parser.add_argument("--snapshot", type=Path, nargs="+", required=True, help=SNAPSHOT_HELP)
    parser.add_argument(
        "--head",
        choices=TRAINER_HEADS,
        default=d.head,
        help="heads over embeddings, or finetune: a transformer trained end to end (for a GPU)",
    )
    parser.add_argument(
        "--base-model",
        default=d.base_model,
        help="with --head finetune: hub name or local directory "
        "(default allenai/scibert_scivocab_uncased)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=d.epochs,
        help="with --head finetune: at most this many (default 4)",
    )
    parser.add_argument("--max-samples", type=positive_int, default=d.max_samples)
    parser.add_argument("--split", choices=["stratified", "time"], default=d.split)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--variant", choices=VARIANTS, default=d.variant)
    parser.add_argument(
        "--tune",
        type=int,
        default=d.tune,
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


def train_options(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        head=args.head,
        base_model=args.base_model,
        epochs=args.epochs,
        max_samples=args.max_samples,
        split=args.split,
        seed=args.seed,
        variant=args.variant,
        tune=args.tune,
        text_head=args.text_head,
        exclude_holdout=args.exclude_holdout,
    )


def print_trained(trained: Trained) -> None:
    state = "promoted" if trained.promoted else "registered (not promoted)"
    print(f"model {trained.result.version} {state}: {trained.result.path}")


def _train(args: argparse.Namespace, settings: Settings) -> int:
    options = train_options(args)
    options.check()  # before any server starts
    with services(settings, need_kafka=False) as found:
        migrate.upgrade(found.database_url)
        registry = Registry(settings, found.database_url)
        trained = train_and_register(
            settings, registry, args.snapshot, options, now=utc_now(), force_promote=args.promote
        )
    print_trained(trained)
    return 0


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


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.snapshot import read_snapshot, snapshot_files
    from lifecycle.evaluate import drop_trained, evaluate_version, select_for_evaluation

    snapshot_files(args.snapshot)  # a missing file is said before a model is looked for
    with services(settings, need_kafka=False) as found:
        registry = Registry(settings, found.database_url)
        version = registry.resolve(args.model)
        papers = select_for_evaluation(
            read_snapshot(args.snapshot), holdout=args.holdout, only_split=args.only_split,
            seed=args.seed, max_samples=args.max_samples,
        )  # fmt: skip
        unseen, trained_on = drop_trained(registry, version, papers)
        if args.unseen:
            papers = unseen
        elif trained_on:
            print(
                f"warning: {trained_on} of {len(papers)} papers were in {version}'s training "
                "data (train or validation): the scores overstate it; --unseen scores only "
                "the others",
                file=sys.stderr,
            )
        if not papers:
            raise ConfigError(
                f"no papers to evaluate in {', '.join(map(str, args.snapshot))}"
                + (f" that {version} did not train on" if args.unseen else "")
            )
        metrics = evaluate_version(registry, version, papers)
    print(json.dumps(metrics, indent=2) if args.json else format_metrics(metrics))
    return 0


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    if not (args.title.strip() or args.abstract.strip()):
        raise ConfigError("predict needs a non-empty --title or --abstract")
    for name in ("title", "abstract"):
        try:
            getattr(args, name).encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"--{name} is not valid UTF-8 text") from None
    with services(settings, need_kafka=False) as found:
        registry = Registry(settings, found.database_url)
        version = registry.resolve(args.model)
        classifier = registry.load(version)
    text = model_text(args.title, args.abstract)
    (prediction,) = classifier.predict_texts([text], top_k=args.top_k)
    if args.json:
        shown = {
            "model_version": version,
            "domain": vars(prediction.domain),
            "category": vars(prediction.category),
            "domain_top_k": [vars(s) for s in prediction.domain_top_k],
            "category_top_k": [vars(s) for s in prediction.category_top_k],
        }
        print(json.dumps(shown, indent=2))
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
        rows = Registry(settings, found.database_url).rows()
    if not rows:
        print("no models registered. " + NO_MODEL_HELP)
        return 0
    for row in rows:
        print(_row_line(row))
    print("(* = promoted)")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        described = Registry(settings, found.database_url).describe(args.version)
    print(json.dumps(described, indent=2, default=str))
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=False) as found:
        Registry(settings, found.database_url).promote(args.version, now=utc_now())
    print(f"promoted {args.version}; running workers switch at their next batch")
    return 0
