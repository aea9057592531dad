"""Kafka clients built from Settings. Nothing else in the project constructs one.

Settings that must hold on Tansu and on real Kafka alike (PLATFORM.md): no idempotent or
transactional producer (Tansu rejects InitProducerId), short session timeouts.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from core.errors import ConfigError
from core.settings import Settings

log = logging.getLogger(__name__)


def bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise ConfigError("no Kafka bootstrap servers configured (and no embedded broker started)")
    return settings.kafka_bootstrap_servers


def connection_options(settings: Settings) -> dict[str, Any]:
    """Security options shared by producer, consumer and admin (SASL / TLS for real clusters)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        if not (settings.kafka_sasl_mechanism and settings.kafka_sasl_username):
            raise ConfigError("SASL needs ARXIV_STREAM_KAFKA_SASL_MECHANISM and _USERNAME")
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password else "",
        )
    return options


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        acks="all",
        enable_idempotence=False,  # Tansu: InitProducerId unsupported; writes are idempotent in PG
        linger_ms=5,
        key_serializer=lambda key: key.encode() if isinstance(key, str) else key,
    )


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    options: dict[str, Any] = {
        "auto_offset_reset": "earliest",
        "session_timeout_ms": int(settings.broker_session_timeout_s * 1000),
        "heartbeat_interval_ms": int(settings.broker_heartbeat_interval_s * 1000),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **connection_options(settings), **options)


@asynccontextmanager
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    client = make_producer(settings)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def topic_exists(settings: Settings, topic: str) -> bool:
    """Whether the broker has ``topic``, asked before any consumer subscribes (a consumer's
    metadata request may create it on brokers that auto-create topics)."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    try:
        await admin.start()
        return topic in set(await admin.list_topics())
    finally:
        await admin.close()


async def ensure_topics(settings: Settings) -> None:
    """Create the project's topics if missing (Faust would too, but the ingester may be first)."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic_papers, settings.topic_classified, settings.topic_dead_letter]
        missing = [
            NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1)
            for name in wanted
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
                log.info("created topics %s", [t.name for t in missing])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
