"""Whether the training targets carry anything to learn, from small aggregates, before
training: an encoder fitted to a constant target logs a near-zero loss, and would be
registered and promoted all the same.

- spend in fewer than 2 classes: every month's class shares and spending personality are
  the same vector (e.g. a source that maps every bill to one class);
- trait parts of the objective (``traits@h``, ``window_traits``): the personality traits
  must vary across the training customer-months.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from microseg.taxonomy import TRAITS

TRAIT_VARIANCE_TOL = 1e-6
SPEND_FEATURE = "log_spend__"
HINTS = {   # source.adapter -> where the mapping assigns classes
    "statements": "map bills to classes by a category column: statements mapping `columns.category` "
                  "and `categories` (source value -> class)",
    "files": "map the category column to several classes: the source mapping's `category_codes` "
             "and `category_map`",
    "berka": "give the Berka mapping's `rules` classes that split the debits",
}


class NothingToLearn(RuntimeError):
    """The training targets are constant: the encoder would learn nothing."""


def classes_with_spend(feature_names: list[str], means: list[float]) -> list[str]:
    """The spend classes whose ``log_spend`` feature has a positive mean over the training
    customers' active months (``gold.feature_stats``): those with any spend."""
    return [name[len(SPEND_FEATURE):] for name, mean in zip(feature_names, means)
            if name.startswith(SPEND_FEATURE) and mean > 0]


def uses_traits(objective: dict[str, float]) -> bool:
    """Whether an objective (``objectives.resolve``) predicts the personality traits."""
    return any((part.startswith("traits@") or part == "window_traits") and w > 0 for part, w in objective.items())


def trait_variance(train: DataFrame) -> list[float]:
    """Variance of each trait over the customer-months of ``train`` (``gold.sequences`` rows)
    that have a personality; one value per trait, 0 where none has."""
    n = len(TRAITS)
    cells = train.select(F.posexplode("traits").alias("i", "v"), "trait_mask")
    has = F.get(F.col("trait_mask"), F.floor(F.col("i") / n).cast("int")) > 0
    rows = (cells.where(has).groupBy((F.col("i") % n).alias("j"))
            .agg(F.var_pop(F.col("v").cast("double")).alias("var")).collect())   # <= 5 rows
    got = {r.j: r.var for r in rows}
    return [float(got.get(j) or 0.0) for j in range(n)]


def check(spending: list[str], variance: list[float] | None, adapter: str) -> None:
    """NothingToLearn naming what was found, when spend falls in fewer than 2 classes or
    (``variance`` given: the objective predicts traits) no trait varies; ``adapter``:
    ``source.adapter``, for where to map differently."""
    hint = HINTS.get(adapter, "map the source's transactions to several spend classes")
    if len(spending) < 2:
        where = f"1 class ({spending[0]})" if spending else "no class"
        raise NothingToLearn(
            f"all spend of the training customers falls in {where}: every month's class shares and spending "
            f"personality are the same, so the encoder has nothing to learn; {hint}, then re-run from ingest")
    if variance is not None and max(variance) < TRAIT_VARIANCE_TOL:
        shown = ", ".join(f"{t} {v:.2g}" for t, v in zip(TRAITS, variance))
        raise NothingToLearn(
            f"the spending personality does not vary across the training customer-months (variance {shown}; "
            f"< {TRAIT_VARIANCE_TOL:g}): the objective's trait targets are constant. The {len(spending)} classes "
            f"with spend ({', '.join(spending)}) give every month the same personality (the same taxonomy "
            f"coefficients, or the same mix every month); {hint}, or choose a `model.objective` without trait parts")
