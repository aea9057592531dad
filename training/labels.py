"""Label spaces of a paper, all derived from ``Paper.categories`` through core.taxonomy.

domain      one of core.taxonomy.DOMAINS (Computer Science, Physics, ...)
group       arXiv group id (grp_physics, ...)
archive     archive of the canonical primary category (cs, hep-th, astro-ph, ...)
category    canonical primary category (cs.LG; retired names mapped: chao-dyn -> nlin.CD)
categories  every declared category, canonical, primary first (multi-label)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.schemas import Paper
from core.taxonomy import archive_of, canonical_categories, domain_of, group_of

SINGLE_LABEL_SPACES: tuple[str, ...] = ("domain", "group", "archive", "category")


@dataclass(frozen=True)
class PaperLabels:
    domain: str
    group: str
    archive: str
    category: str
    categories: tuple[str, ...]

    def get(self, space: str) -> str:
        """The label of one single-label space (``domain`` ... ``category``)."""
        if space not in SINGLE_LABEL_SPACES:
            raise KeyError(space)
        return str(getattr(self, space))


def labels_of(paper: Paper) -> PaperLabels | None:
    """All label spaces of ``paper``; None when it declares no category."""
    categories = canonical_categories(paper.categories)
    if not categories:
        return None
    primary = categories[0]
    return PaperLabels(
        domain=domain_of(primary),
        group=group_of(primary),
        archive=archive_of(primary),
        category=primary,
        categories=tuple(categories),
    )


def parents_of(category: str) -> dict[str, str]:
    """``{"domain": ..., "group": ..., "archive": ...}`` of a canonical category."""
    return {
        "domain": domain_of(category),
        "group": group_of(category),
        "archive": archive_of(category),
    }


def category_mapping(categories: Iterable[str]) -> dict[str, dict[str, str]]:
    """category -> its domain/group/archive, for the categories a model was trained on."""
    return {c: parents_of(c) for c in sorted(set(categories))}


def column(labels: Sequence[PaperLabels], space: str) -> list[str]:
    """One single-label space as a list, aligned with ``labels``."""
    return [item.get(space) for item in labels]
