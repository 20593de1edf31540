"""A synthetic bank with planted ground truth, generated in parallel by Spark.

Customers fall into ``coarse_groups`` groups that differ in *what* they buy: a base class
mix per group. Within a group, micro-segments differ only in *how* that spending moves over
time; their window-mean mix stays the group's base mix. Each micro-segment has parameters
fixed by the seed: a pair of the group's larger classes (a, b) and a behaviour, and every
month its mix is ``base + w_t * A * (e_a - e_b)`` with ``A = 0.8 * min(base[a], base[b])``:

- micro 0 ``steady``: w = 0;
- micro 1.. cycle through ``drifting`` (w from -1 to +1 over the months), ``seasonal``
  (w = sin(2 pi calendar_month / 6 + phase), phase fixed per micro-segment) and ``regime``
  (w = -1 before a switch month in the middle third, drawn per customer, +1 after).

On top of that: a salary day per customer, rent and utility bills, seasonality (December
and summer), lognormal amounts per class, late joiners (short histories) and life events
(an income change at a random month). Output: CSV files per month in the landing folder
(the canonical layout, read through ``conf/sources/generated.yaml``), a loan book with each
loan's grant date, and the ground truth in its own table, which the pipeline never reads.

Each customer is generated from ``numpy.random.default_rng([seed, customer_index, k])``,
so the output does not depend on partitioning. Loan default is drawn from the latent state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from microseg.config import GeneratorConfig
from microseg.taxonomy import Taxonomy

DYNAMICS = ("steady", "drifting", "seasonal", "regime")
AMPLITUDE = 0.8      # a micro-segment moves this share of min(base[a], base[b]) between a and b
LOAN_MARGIN = 6      # months of history before a loan is granted, and observed after it

RAW_SCHEMA = StructType(
    [
        StructField("customer_id", StringType(), False),
        StructField("txn_id", StringType(), False),
        StructField("booking_date", DateType(), False),
        StructField("amount", DoubleType(), False),
        StructField("currency", StringType(), False),
        StructField("category", StringType(), False),
        StructField("balance_after", DoubleType(), True),
    ]
)

TRUTH_SCHEMA = StructType(
    [
        StructField("customer_id", StringType(), False),
        StructField("coarse_group", IntegerType(), False),
        StructField("micro_segment", IntegerType(), False),
        StructField("dynamics", StringType(), False),
        StructField("first_month", IntegerType(), False),
        StructField("monthly_income", DoubleType(), False),
        StructField("loan_default", IntegerType(), False),
        StructField("loan_date", DateType(), True),
    ]
)


# Bad rows the generator can inject (reason code -> how the CSV field is spoiled).
INJECTABLE = {
    "MALFORMED_LINE": ("customer_id", lambda c: F.concat(F.lit('"'), c)),  # unterminated quote
    "UNPARSABLE_DATE": ("booking_date", lambda c: F.lit("2024-13-45")),
    "UNPARSABLE_AMOUNT": ("amount", lambda c: F.lit("12.5.3")),
    "UNPARSABLE_BALANCE": ("balance_after", lambda c: F.lit("n/a")),
    "MISSING_CUSTOMER_ID": ("customer_id", lambda c: F.lit(None)),
    "MISSING_TXN_ID": ("txn_id", lambda c: F.lit(None)),
    "MISSING_DATE": ("booking_date", lambda c: F.lit(None)),
    "MISSING_AMOUNT": ("amount", lambda c: F.lit(None)),
    "DATE_OUT_OF_WINDOW": ("booking_date", lambda c: F.lit("1899-12-31")),
    "DATE_IN_FUTURE": ("booking_date", lambda c: F.lit("2999-01-01")),
    "ABSURD_AMOUNT": ("amount", lambda c: F.lit("-99999999999")),
    "UNKNOWN_CURRENCY": ("currency", lambda c: F.lit("XXX")),
    "UNKNOWN_CATEGORY": ("category", lambda c: F.lit("mystery_shop")),
    "DUPLICATE_TXN_ID": (None, None),                                   # the row is written twice
}


def customer_id(index: int) -> str:
    return f"C{index:08d}"


def group_mixes(n_groups: int, n_classes: int, seed: int) -> np.ndarray:
    """Per group a base class mix (rows sum to 1), fixed by the seed."""
    return np.random.default_rng([seed, 7_777]).dirichlet(np.full(n_classes, 0.35), size=n_groups)


def micro_dynamics(micro: int) -> tuple[str, int]:
    """Dynamics and variant index of micro-segment ``micro`` within its group."""
    if micro == 0:
        return "steady", 0
    return DYNAMICS[1 + (micro - 1) % 3], (micro - 1) // 3


@dataclass(frozen=True)
class MicroPlan:
    """A micro-segment's fixed behaviour: mass moves from class b to class a as w rises."""

    dynamics: str
    a: int
    b: int
    amplitude: float
    phase: float


def micro_plans(base: np.ndarray, micro_per_group: int, seed: int, top: int = 4) -> list[list[MicroPlan]]:
    """Per group and micro-segment its plan, fixed by the seed. Variants of one dynamics take
    distinct pairs of the group's ``top`` largest classes (then the same pairs reversed)."""
    plans = []
    for g, mix in enumerate(base):
        large = np.argsort(-mix, kind="stable")[:top]
        pairs = [(int(a), int(b)) for i, a in enumerate(large) for b in large[i + 1:]]
        row = []
        for m in range(micro_per_group):
            dynamics, v = micro_dynamics(m)
            rng = np.random.default_rng([seed, 8_888, g, DYNAMICS.index(dynamics)])
            order, flips = rng.permutation(len(pairs)), rng.random(len(pairs)) < 0.5
            phases = rng.uniform(0, 2 * np.pi, size=micro_per_group)
            k = order[v % len(pairs)]
            a, b = pairs[k][::-1] if flips[k] != (v // len(pairs)) % 2 else pairs[k]
            amplitude = 0.0 if dynamics == "steady" else AMPLITUDE * min(mix[a], mix[b])
            row.append(MicroPlan(dynamics, a, b, float(amplitude), float(phases[v])))
        plans.append(row)
    return plans


def mix_weights(plan: MicroPlan, calendar: np.ndarray, switch: int) -> np.ndarray:
    """w_t in [-1, 1] per generated month (``calendar``: month of the year, 0-11)."""
    months = len(calendar)
    if plan.dynamics == "drifting":
        return np.linspace(-1.0, 1.0, months)
    if plan.dynamics == "seasonal":
        return np.sin(2 * np.pi * calendar / 6 + plan.phase)
    if plan.dynamics == "regime":
        return np.where(np.arange(months) < switch, -1.0, 1.0)
    return np.zeros(months)


def monthly_mix(base: np.ndarray, plan: MicroPlan, w: np.ndarray) -> np.ndarray:
    """Class mix per month: ``base + w_t * A * (e_a - e_b)`` (rows sum to 1, all >= 0)."""
    move = np.zeros_like(base)
    move[plan.a] += plan.amplitude
    move[plan.b] -= plan.amplitude
    return base[None, :] + w[:, None] * move[None, :]


def loan_month(first: int, months: int, rng: np.random.Generator) -> int | None:
    """The month a loan is granted, leaving ``LOAN_MARGIN`` months of history before it and
    after it; None where the customer's history is too short for both."""
    low, high = max(first + LOAN_MARGIN, months // 3), months - LOAN_MARGIN - 1
    return int(rng.integers(low, high + 1)) if low <= high else None


def month_start(start_month: str, k: int) -> dt.date:
    """The first day of generated month ``k`` (0 = ``start_month``, "YYYY-MM")."""
    year, month = divmod(int(start_month[:4]) * 12 + int(start_month[5:7]) - 1 + k, 12)
    return dt.date(year, month + 1, 1)


def latent_state(index: int, cfg: GeneratorConfig, seed: int) -> dict:
    """A customer's hidden state: group, micro-segment, dynamics, income, loan default."""
    rng = np.random.default_rng([seed, index, 0])
    group = int(rng.integers(cfg.coarse_groups))
    micro = int(rng.integers(cfg.micro_per_group))
    dynamics, _ = micro_dynamics(micro)
    # 15% join late: short histories, some shorter than a training window's minimum.
    first = int(rng.integers(1, cfg.months - 1)) if rng.random() < 0.15 else 0
    income = float(rng.lognormal(np.log(3000), 0.4))
    spend_ratio = float(rng.uniform(0.6, 1.0))
    buffer = float(rng.uniform(0.2, 3.0))  # opening balance in months of income
    switch = int(rng.integers(cfg.months // 3, max(2 * cfg.months // 3, cfg.months // 3 + 1)))
    salary_day = int(rng.integers(1, 29))
    rent_share = float(rng.uniform(0.15, 0.35))
    # Life event for 10%: from a random month on, income changes by -50%..+50%.
    event_month = int(rng.integers(cfg.months // 4, cfg.months)) if rng.random() < 0.1 else cfg.months
    event_factor = float(rng.uniform(0.5, 1.5))
    # Default risk rises with volatile dynamics, a high spend ratio and a thin buffer.
    logit = (-3.0 + 2.5 * (spend_ratio - 0.8) / 0.2 - 0.8 * np.log(buffer + 0.1)
             + (0.9 if dynamics in ("seasonal", "regime") else 0.0))
    granted = loan_month(first, cfg.months, np.random.default_rng([seed, index, 2]))
    return {
        "customer_id": customer_id(index), "coarse_group": group,
        "micro_segment": group * cfg.micro_per_group + micro, "dynamics": dynamics,
        "first_month": first, "monthly_income": round(income, 2),
        "loan_default": int(rng.random() < 1 / (1 + np.exp(-logit))),
        "loan_date": None if granted is None else month_start(cfg.start_month, granted),
        "_micro": micro, "_spend_ratio": spend_ratio, "_buffer": buffer, "_switch": switch,
        "_salary_day": salary_day, "_rent_share": rent_share,
        "_event_month": event_month, "_event_factor": event_factor,
    }


SEASON = np.array([0.95, 0.9, 1.0, 1.0, 1.0, 1.05, 1.15, 1.15, 1.0, 1.0, 1.05, 1.3])  # Jan..Dec


@dataclass(frozen=True)
class Bank:
    """What all customers share: classes, group mixes, micro-segment plans, the calendar."""

    spend_classes: list[str]
    income_class: str
    base: np.ndarray           # group x spend class
    plans: list[list[MicroPlan]]
    class_size: np.ndarray     # typical amount per spend class
    month_starts: np.ndarray   # datetime64[D] per generated month

    @property
    def calendar(self) -> np.ndarray:
        return self.month_starts.astype("datetime64[M]").astype(int) % 12


def make_bank(cfg: GeneratorConfig, seed: int, taxonomy: Taxonomy) -> Bank:
    """The shared part of the synthetic bank, fixed by the seed."""
    spend = taxonomy.spend_classes
    missing = {"mortgage_rent", "utilities"} - set(spend)
    if missing:
        raise ValueError(f"the generator books rent and bills to {sorted(missing)}: add them to the taxonomy")
    base = group_mixes(cfg.coarse_groups, len(spend), seed)
    return Bank(
        spend_classes=spend,
        income_class=taxonomy.income_classes[0] if taxonomy.income_classes else "income",
        base=base,
        plans=micro_plans(base, cfg.micro_per_group, seed),
        class_size=np.random.default_rng([seed, 9_999]).lognormal(3.5, 0.8, size=len(spend)),
        month_starts=np.array(pd.date_range(f"{cfg.start_month}-01", periods=cfg.months, freq="MS").values,
                              dtype="datetime64[D]"),
    )


def customer_mix(state: dict, bank: Bank) -> np.ndarray:
    """The customer's class mix per generated month (months x spend classes)."""
    group = state["coarse_group"]
    plan = bank.plans[group][state["_micro"]]
    return monthly_mix(bank.base[group], plan, mix_weights(plan, bank.calendar, state["_switch"]))


def customer_transactions(index: int, state: dict, cfg: GeneratorConfig, seed: int, bank: Bank) -> pd.DataFrame:
    """One customer's transactions (salary, bills, card spend), with running balance."""
    rng = np.random.default_rng([seed, index, 1])
    first, spend_classes = state["first_month"], bank.spend_classes
    month_idx = np.arange(first, cfg.months)
    income = state["monthly_income"] * np.where(month_idx >= state["_event_month"], state["_event_factor"], 1.0)
    calendar = bank.calendar[month_idx]
    mix = customer_mix(state, bank)[first:]
    counts = rng.poisson(cfg.tx_per_month * SEASON[calendar])
    tx_month = np.repeat(month_idx, counts)
    cum = np.cumsum(mix, axis=1)[tx_month - first]
    cls = np.minimum((rng.random(len(tx_month))[:, None] > cum).sum(axis=1), len(spend_classes) - 1)
    raw = bank.class_size[cls] * rng.lognormal(0.0, 0.5, size=len(cls))
    # Card spend per month: spend_ratio * income * season (totals alike across dynamics).
    budget = state["_spend_ratio"] * income * SEASON[calendar] * (1 - state["_rent_share"] - 0.05)
    month_total = np.bincount(tx_month - first, weights=raw, minlength=len(month_idx))
    spend = -np.round(raw * (budget / np.maximum(month_total, 1e-9))[tx_month - first], 2)
    pay = np.round(income * rng.normal(1.0, 0.03, size=len(month_idx)), 2)
    rent = np.full(len(month_idx), -round(state["_rent_share"] * state["monthly_income"], 2))
    bills = -np.round(0.05 * income * rng.lognormal(0.0, 0.2, size=len(month_idx)), 2)

    n = len(month_idx)
    months = np.concatenate([month_idx, month_idx, month_idx, tx_month])
    days = np.concatenate([np.full(n, state["_salary_day"] - 1), np.zeros(n, dtype=int),
                           np.full(n, 14), rng.integers(0, 28, size=len(tx_month))])
    amounts = np.concatenate([pay, rent, bills, spend])
    classes = np.concatenate([np.full(n, bank.income_class, dtype=object), np.full(n, "mortgage_rent", dtype=object),
                              np.full(n, "utilities", dtype=object), np.asarray(spend_classes, dtype=object)[cls]])
    order = np.lexsort((days, months))
    booking = bank.month_starts[months[order]] + days[order].astype("timedelta64[D]")
    cid = state["customer_id"]
    return pd.DataFrame({
        "customer_id": cid,
        "txn_id": [f"{cid}-{k:06d}" for k in range(len(order))],
        "booking_date": pd.DatetimeIndex(booking).date,
        "amount": amounts[order].astype(float),
        "currency": "EUR",
        "category": classes[order],
        "balance_after": np.round(state["monthly_income"] * state["_buffer"] + np.cumsum(amounts[order]), 2),
    })


def _generator_fn(cfg: GeneratorConfig, seed: int, taxonomy: Taxonomy, want: str):
    bank = make_bank(cfg, seed, taxonomy)

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            states = [latent_state(i, cfg, seed) for i in batch["id"].tolist()]
            if want == "truth":
                yield pd.DataFrame(states, columns=TRUTH_SCHEMA.fieldNames())
                continue
            frames = [customer_transactions(i, s, cfg, seed, bank) for i, s in zip(batch["id"].tolist(), states)]
            if frames:
                yield pd.concat(frames, ignore_index=True)

    return fn


def generate(spark: SparkSession, cfg: GeneratorConfig, seed: int,
             taxonomy: Taxonomy) -> tuple[DataFrame, DataFrame]:
    """Raw transactions and the ground truth, as lazy DataFrames computed on executors."""
    ids = spark.range(0, cfg.customers, numPartitions=cfg.partitions)
    tx = ids.mapInPandas(_generator_fn(cfg, seed, taxonomy, "transactions"), RAW_SCHEMA)
    truth = ids.mapInPandas(_generator_fn(cfg, seed, taxonomy, "truth"), TRUTH_SCHEMA)
    return tx, truth


def loan_book(truth: DataFrame, seed: int, share: float = 0.6) -> DataFrame:
    """A loan for ``share`` of the customers with a grant month (``loan_date``, yyyy-MM-dd);
    status B/D (default) or A/C, from the latent state."""
    u = F.pmod(F.xxhash64("customer_id", F.lit(seed), F.lit("loan")), F.lit(1000)) / 1000.0
    running = F.pmod(F.xxhash64("customer_id", F.lit(seed), F.lit("running")), F.lit(2)) == 0
    status = (F.when(F.col("loan_default") == 1, F.when(running, "D").otherwise("B"))
              .otherwise(F.when(running, "C").otherwise("A")))
    return truth.where((u < share) & F.col("loan_date").isNotNull()).select(
        "customer_id", F.concat(F.lit("L"), F.col("customer_id")).alias("loan_id"), status.alias("loan_status"),
        F.date_format("loan_date", "yyyy-MM-dd").alias("loan_date"))


def spoil(tx: DataFrame, rates: dict[str, float], seed: int) -> DataFrame:
    """Transactions as CSV strings, with each kind of bad row injected at its rate."""
    rows = tx.select(*[F.col(c).cast("string").alias(c) for c in tx.columns],
                     F.date_format("booking_date", "yyyy-MM").alias("month"))
    for reason, rate in sorted(rates.items()):
        if rate <= 0:
            continue
        hit = F.pmod(F.xxhash64("txn_id", F.lit(reason), F.lit(seed)), F.lit(1_000_000)) < int(rate * 1_000_000)
        column, spoil_fn = INJECTABLE[reason]
        if column is None:
            rows = rows.unionByName(rows.where(hit))
        else:
            rows = rows.withColumn(column, F.when(hit, spoil_fn(F.col(column))).otherwise(F.col(column)))
    return rows


def write_landing(tx: DataFrame, loans: DataFrame, landing: str, rates: dict[str, float], seed: int) -> None:
    """CSV files: ``transactions/month=YYYY-MM/`` (one file per month per shuffle partition
    holding it) and ``loans/``, replacing earlier ones."""
    (spoil(tx, rates, seed).repartition("month").write.mode("overwrite").partitionBy("month")
     .option("header", "true").option("quote", "")   # no quoting: an injected quote stays broken
     .csv(f"{landing}/transactions"))
    loans.coalesce(1).write.mode("overwrite").option("header", "true").csv(f"{landing}/loans")
