"""arXiv taxonomy as the classifier needs it: category -> archive -> group -> domain.

The tables below are the facts of arXiv's own taxonomy (arxiv-base ``definitions.py``);
``tests/unit/test_taxonomy.py`` checks them against ``../shared/data/taxonomy`` so they
cannot drift. They are small and stable, so serving needs no data file.

Label spaces (coarse to fine):
  domain     the seven broad domains used by the SciBERT service in the seeds, with the whole
             arXiv physics group (``physics.*`` and ``math-ph`` included) under Physics
  group      arXiv's eight groups (grp_physics, grp_math, ...)
  archive    ``cs``, ``hep-th``, ``astro-ph``, ...
  category   the canonical primary category (aliases and retired archives mapped)
"""

from __future__ import annotations

from typing import Final

# archive -> arXiv group, active and retired archives alike.
ARCHIVE_GROUP: Final[dict[str, str]] = {
    "acc-phys": "grp_physics", "adap-org": "grp_physics", "alg-geom": "grp_math",
    "ao-sci": "grp_physics", "astro-ph": "grp_physics", "atom-ph": "grp_physics",
    "bayes-an": "grp_physics", "chao-dyn": "grp_physics", "chem-ph": "grp_physics",
    "cmp-lg": "grp_cs", "comp-gas": "grp_physics", "cond-mat": "grp_physics",
    "cs": "grp_cs", "dg-ga": "grp_math", "econ": "grp_econ", "eess": "grp_eess",
    "funct-an": "grp_math", "gr-qc": "grp_physics", "hep-ex": "grp_physics",
    "hep-lat": "grp_physics", "hep-ph": "grp_physics", "hep-th": "grp_physics",
    "math": "grp_math", "math-ph": "grp_physics", "mtrl-th": "grp_physics",
    "nlin": "grp_physics", "nucl-ex": "grp_physics", "nucl-th": "grp_physics",
    "patt-sol": "grp_physics", "physics": "grp_physics", "plasm-ph": "grp_physics",
    "q-alg": "grp_math", "q-bio": "grp_q-bio", "q-fin": "grp_q-fin",
    "quant-ph": "grp_physics", "solv-int": "grp_physics", "stat": "grp_stat",
    "supr-con": "grp_physics",
}  # fmt: skip

# Categories that are another category under a second name (arXiv's CATEGORY_ALIASES).
CATEGORY_ALIASES: Final[dict[str, str]] = {
    "math.MP": "math-ph", "stat.TH": "math.ST", "math.IT": "cs.IT",
    "q-fin.EC": "econ.GN", "cs.SY": "eess.SY", "cs.NA": "math.NA",
}  # fmt: skip

# Retired archives and the category that took them over (arXiv's ARCHIVES_SUBSUMED).
ARCHIVES_SUBSUMED: Final[dict[str, str]] = {
    "cmp-lg": "cs.CL", "adap-org": "nlin.AO", "comp-gas": "nlin.CG", "chao-dyn": "nlin.CD",
    "solv-int": "nlin.SI", "patt-sol": "nlin.PS", "alg-geom": "math.AG", "dg-ga": "math.DG",
    "funct-an": "math.FA", "q-alg": "math.QA", "mtrl-th": "cond-mat.mtrl-sci",
    "supr-con": "cond-mat.supr-con", "acc-phys": "physics.acc-ph", "ao-sci": "physics.ao-ph",
    "atom-ph": "physics.atom-ph", "bayes-an": "physics.data-an", "chem-ph": "physics.chem-ph",
    "plasm-ph": "physics.plasm-ph",
}  # fmt: skip

GROUP_NAMES: Final[dict[str, str]] = {
    "grp_physics": "Physics", "grp_math": "Mathematics", "grp_cs": "Computer Science",
    "grp_q-bio": "Quantitative Biology", "grp_q-fin": "Quantitative Finance",
    "grp_stat": "Statistics", "grp_eess": "Electrical Engineering and Systems Science",
    "grp_econ": "Economics",
}  # fmt: skip

# The seven broad domains of the seed SciBERT service, keyed by arXiv group.
DOMAINS: Final[tuple[str, ...]] = (
    "Computer Science", "Physics", "Mathematics", "Biology", "Economics", "Engineering", "Other",
)  # fmt: skip
_GROUP_DOMAIN: Final[dict[str, str]] = {
    "grp_cs": "Computer Science", "grp_physics": "Physics", "grp_math": "Mathematics",
    "grp_stat": "Mathematics", "grp_q-bio": "Biology", "grp_q-fin": "Economics",
    "grp_econ": "Economics", "grp_eess": "Engineering",
}  # fmt: skip

# The archives of the rss.arxiv.org "all archives" feed (the default to follow).
RSS_ARCHIVES: Final[tuple[str, ...]] = (
    "astro-ph", "cond-mat", "cs", "econ", "eess", "gr-qc", "hep-ex", "hep-lat", "hep-ph",
    "hep-th", "math", "math-ph", "nlin", "nucl-ex", "nucl-th", "physics", "q-bio", "q-fin",
    "quant-ph", "stat",
)  # fmt: skip


def canonical_category(category: str) -> str:
    """Today's name of a category: aliases and subsumed archives mapped, else unchanged."""
    category = category.strip()
    if category in CATEGORY_ALIASES:
        return CATEGORY_ALIASES[category]
    return ARCHIVES_SUBSUMED.get(category, category)


def archive_of(category: str) -> str:
    """``cs.LG`` -> ``cs``; ``hep-th`` -> ``hep-th``; ``math-ph`` -> ``math-ph``."""
    return canonical_category(category).split(".", 1)[0]


def group_of(category: str) -> str:
    """arXiv group id (``grp_physics`` ...) or ``grp_other`` for unknown archives."""
    return ARCHIVE_GROUP.get(archive_of(category), "grp_other")


def domain_of(category: str) -> str:
    """One of DOMAINS. Unknown archives (``test``, typos) fall under ``Other``."""
    return _GROUP_DOMAIN.get(group_of(category), "Other")


def canonical_categories(categories: list[str]) -> list[str]:
    """Canonical names, order kept (primary first), duplicates dropped."""
    seen: dict[str, None] = {}
    for cat in categories:
        if cat.strip():
            seen.setdefault(canonical_category(cat), None)
    return list(seen)
