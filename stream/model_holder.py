"""Holds the worker's current model and swaps it when another version is promoted.

The agent calls ``current()`` at the start of every batch, so a swap always happens between
batches: a batch is classified by exactly one model version and nothing is dropped or
classified twice. Loading runs in a thread so the event loop keeps heart-beating.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import ModelNotFoundError
from core.settings import Settings
from db import repository
from models.registry import NO_MODEL_HELP
from stream.pipeline import Classifier

log = logging.getLogger(__name__)

PromotedLookup = Callable[[], Awaitable[str | None]]
Loader = Callable[[str], Classifier]
"""Loads a model version (the worker's: its registry directory, models.registry)."""


class ModelHolder:
    def __init__(
        self,
        *,
        promoted_version: PromotedLookup,
        loader: Loader,
        poll_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._promoted_version = promoted_version
        self._loader = loader
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._model: Classifier | None = None
        self._checked_at = float("-inf")
        # One load at a time: the start-up task and the first batch may both ask.
        self._lock = asyncio.Lock()

    async def start(self) -> Classifier:
        """Load the promoted model or refuse to start, saying how to make one."""
        async with self._lock:
            if self._model is not None:
                return self._model
            version = await self._promoted_version()
            if version is None:
                raise ModelNotFoundError(NO_MODEL_HELP)
            self._model = await self._load(version)
            self._checked_at = self._clock()
            return self._model

    async def current(self) -> Classifier:
        """The model for the next batch; checks for a promotion at most every poll interval."""
        if self._model is None:
            return await self.start()
        if self._clock() - self._checked_at >= self._poll_interval_s:
            self._checked_at = self._clock()
            try:
                version = await self._promoted_version()
            except Exception:  # a DB blip must not stop classification with the model we have
                log.warning("could not check for a promoted model; keeping %s", self._model.version)
                return self._model
            if version is not None and version != self._model.version:
                log.info("promoted model changed: %s -> %s", self._model.version, version)
                try:
                    self._model = await self._load(version)
                except Exception:
                    log.exception(
                        "could not load model %s; keeping %s", version, self._model.version
                    )
        return self._model

    async def _load(self, version: str) -> Classifier:
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, self._loader, version)
        log.info("model %s loaded", model.version)
        return model


def promoted_model_holder(
    settings: Settings, engine: AsyncEngine, *, loader: Loader | None = None
) -> ModelHolder:
    """The holder the worker and the API use: the promoted version as the database says
    (through ``engine``), loaded from the registry directory (models.registry), swapped
    at most every ``model_poll_interval_s``. ``loader`` replaces the loading (tests)."""

    async def promoted() -> str | None:
        async with engine.connect() as conn:
            return await repository.promoted_version(conn)

    def load(version: str) -> Classifier:
        from models.registry import load_version  # torch loads only here

        return load_version(
            settings.models_dir,
            version,
            device=settings.device,
            batch_size=settings.embed_batch_size,
            num_threads=settings.cpu_threads,
        )

    return ModelHolder(
        promoted_version=promoted,
        loader=loader or load,
        poll_interval_s=settings.model_poll_interval_s,
    )
