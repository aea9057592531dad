"""The Faust App, and nothing else: built from Settings so the same code runs on the
embedded Tansu broker and on a real Kafka cluster.

Settings chosen for both (PLATFORM.md): short session timeout and heartbeat (Tansu holds
group joins for half the session timeout), at-least-once processing (Tansu has no
transactions; PostgreSQL writes are idempotent upserts instead), in-memory table store
(durable state lives in PostgreSQL), no web server unless asked for.
"""

from __future__ import annotations

import faust

from broker.client import bootstrap, connection_options
from core.settings import Settings


def _credentials(settings: Settings) -> faust.auth.Credentials | None:
    options = connection_options(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=options.get("ssl_context"),
        )
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return None


def create_app(settings: Settings, *, web_port: int | None = None) -> faust.App:
    """``web_port`` turns Faust's web server on, bound to loopback only."""
    brokers = [f"kafka://{server.strip()}" for server in bootstrap(settings).split(",")]
    return faust.App(
        settings.consumer_group,
        broker=brokers,
        broker_credentials=_credentials(settings),
        store="memory://",
        autodiscover=False,
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=web_port is not None,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=web_port or settings.worker_web_port,
    )
