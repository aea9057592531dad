"""Progress for long jobs (reading, embedding, fitting): a tqdm bar on a terminal, or a
silent stand-in with the same methods, so callers never branch on whether to show one.
tqdm's bar prints rate and ETA; it is imported only when a bar is shown."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")


class Bar(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def set_postfix_str(self, text: str) -> Any: ...

    def close(self) -> Any: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, text: str) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(total: int, *, desc: str, unit: str, enabled: bool) -> Bar:
    """A bar over ``total`` units; silent when not ``enabled`` or there is nothing to do."""
    if not enabled or total == 0:
        return _Silent()
    from tqdm.auto import tqdm

    return cast(Bar, tqdm(total=total, desc=desc, unit=unit, smoothing=0.1))


def progress_iter(items: Iterable[T], *, desc: str, unit: str, enabled: bool) -> Iterator[T]:
    """``items`` unchanged, counted on a bar (no total needed) when ``enabled``."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, unit=unit)
