"""Speed of data preparation: landing CSV files -> gold sequences, against DuckDB.

At two sizes (1x and 10x transactions), each in a fresh lakehouse folder under a temp dir,
with one warmed-up local[2] Spark session for everything:

- ``generate``: the pipeline's generate stage (synthetic bank -> landing CSV files);
- ours: the stages ingest -> aggregate -> personality -> sequences through
  ``pipeline.run_stage``, each timed with ``time.perf_counter``;
- reference: :func:`duckdb_reference`, DuckDB with 2 threads doing comparable work on the
  same landing files, right after ours, so both see the same machine load.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from microseg.config import Settings, load_config
from microseg.pipeline import Context, run_stage
from microseg.prep.sequences import feature_names
from microseg.spark import get_spark
from microseg.taxonomy import TRAITS, load_taxonomy

SCALES = {"small": (100_000, 1_000_000), "full": (1_000_000, 10_000_000)}  # transactions: 1x, 10x
TX_PER_CUSTOMER = 485   # measured: ~22 a customer-month x 24 months, fewer for late joiners
STAGES = ("ingest", "aggregate", "personality", "sequences")
CORES = 2               # local[2] and DuckDB threads=2
TODAY = "2025-06-30"    # ingest.today: the generated months end 2024-12


@dataclass
class Run:
    customers: int
    transactions: int
    generate_s: float
    stage_s: dict[str, float]
    duckdb_s: float

    @property
    def ours_s(self) -> float:
        return sum(self.stage_s.values())


def timed(what: str, fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds ``fn`` took (printed as a progress line) and its result."""
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"  {what:<28} {seconds:8.1f} s", flush=True)
    return seconds, out


def config(base: Settings, root: Path, customers: int) -> Settings:
    return base.with_overrides(**{"tables.root": str(root), "generator.customers": customers})


def warm_up(spark, folder: Path) -> None:
    """A tiny query and a tiny Delta round trip: Spark's first ones are several times slower."""
    def work():
        spark.range(1000).selectExpr("sum(id)").collect()
        spark.range(10).write.format("delta").save(str(folder))
        spark.read.format("delta").load(str(folder)).count()
    timed("spark warm-up", work)


def measure(spark, base: Settings, root: Path, label: str, target_tx: int) -> Run:
    """Generate ~``target_tx`` transactions, then time our stages and DuckDB on them."""
    cfg = config(base, root, customers=max(1, round(target_tx / TX_PER_CUSTOMER)))
    ctx = Context.create(cfg, spark)
    print(f"-- {label}: {cfg.generator.customers:,} customers, ~{target_tx:,} transactions", flush=True)
    generate_s, _ = timed("generate", lambda: run_stage("generate", ctx))
    stage_s, results = {}, {}
    for stage in STAGES:
        stage_s[stage], results[stage] = timed(f"ours {stage}", lambda s=stage: run_stage(s, ctx))
    rows = results["ingest"]["rows_read"]
    print(f"  ours total {sum(stage_s.values()):.1f} s for {rows:,} transactions "
          f"({results['ingest']['rows_quarantined']} quarantined)", flush=True)
    duckdb_s = duckdb_reference(cfg, root / "duckdb")
    return Run(cfg.generator.customers, rows, generate_s, stage_s, duckdb_s)


def run(scale: str) -> dict[str, tuple[float, str]]:
    """The figures: throughput, ratios against DuckDB, growth from 1x to 10x, seconds."""
    base = load_config("local", overrides={"spark.shuffle_partitions": 8, "ingest.today": TODAY})
    with tempfile.TemporaryDirectory(prefix="microseg-bench-") as tmp:
        spark = get_spark(config(base, Path(tmp) / "warm", 1))
        try:
            warm_up(spark, Path(tmp) / "warm" / "delta")
            one, ten = (measure(spark, base, Path(tmp) / label, label, n)
                        for label, n in zip(("1x", "10x"), SCALES[scale]))
        finally:
            spark.stop()
    return {
        "prep.tx_1x": (one.transactions, "rows"),
        "prep.tx_10x": (ten.transactions, "rows"),
        "generate.customers_per_min": (ten.customers / ten.generate_s * 60, "customers/min"),
        "prep.tx_per_s_per_core": (ten.transactions / ten.ours_s / CORES, "tx/s/core"),
        "prep.ratio_vs_duckdb": (ten.duckdb_s / ten.ours_s, "ratio"),
        "prep.ratio_vs_duckdb_1x": (one.duckdb_s / one.ours_s, "ratio"),
        "prep.cost_growth_10x": ((ten.ours_s / ten.transactions) / (one.ours_s / one.transactions), "ratio"),
        **{f"prep.seconds_{stage}_10x": (ten.stage_s[stage], "s") for stage in STAGES},
        "prep.seconds_total_10x": (ten.ours_s, "s"),
        "prep.duckdb_seconds_10x": (ten.duckdb_s, "s"),
    }


# --- the DuckDB reference --------------------------------------------------------------

def _values(rows: list[tuple], names: str) -> str:
    """A SQL VALUES table from small Python rows (strings quoted, dates typed)."""
    def lit(v):
        return f"'{v}'" if isinstance(v, str) else (f"DATE '{v}'" if hasattr(v, "year") else repr(v))
    return f"(VALUES {', '.join('(' + ', '.join(map(lit, r)) + ')' for r in rows)}) AS {names}"


def _in(items: list[str]) -> str:
    return "(" + ", ".join(f"'{i}'" for i in items) + ")"


def bronze_sql(cfg: Settings, classes: list[str], out: Path) -> str:
    """Landing CSVs as strings -> parsed, validated rows -> bronze Parquet."""
    rules = cfg.ingest
    landing = cfg.data_path(cfg.source.path)
    return f"""
    COPY (
      WITH raw AS (
        SELECT trim(customer_id) AS customer_id, trim(txn_id) AS txn_id,
               try_strptime(trim(booking_date), '%Y-%m-%d')::DATE AS booking_date,
               TRY_CAST(trim(amount) AS DOUBLE) AS amount, trim(currency) AS currency,
               trim(category) AS category, nullif(trim(balance_after), '') AS balance_text,
               TRY_CAST(balance_text AS DOUBLE) AS balance_after, filename AS source_file
        FROM read_csv('{landing}/*/*.csv', header = true, all_varchar = true,
                      hive_partitioning = false, filename = true))
      SELECT customer_id, txn_id, booking_date, date_trunc('month', booking_date)::DATE AS month,
             amount, currency, category AS txn_class, category AS raw_category, balance_after,
             'generator' AS source, source_file, 'duckdb' AS batch_id
      FROM raw
      WHERE coalesce(customer_id, '') <> '' AND coalesce(txn_id, '') <> ''
        AND booking_date BETWEEN DATE '{rules.date_window.start}-01' AND DATE '{rules.today}'
        AND isfinite(amount) AND abs(amount) <= {rules.max_abs_amount}
        AND (balance_text IS NULL OR balance_after IS NOT NULL)
        AND currency IN {_in(rules.currencies)} AND category IN {_in(classes)}
    ) TO '{out}/bronze.parquet' (FORMAT parquet)"""


def aggregate_sql(spend_classes: list[str], out: Path) -> list[str]:
    """Bronze -> monthly spend (customer x month x class) and monthly account totals."""
    return [f"""
    COPY (SELECT customer_id, month, txn_class, round(sum(-amount), 2) AS spend, count(*)::INT AS n_tx
          FROM '{out}/bronze.parquet' WHERE amount < 0 AND txn_class IN {_in(spend_classes)}
          GROUP BY customer_id, month, txn_class
    ) TO '{out}/monthly_spend.parquet' (FORMAT parquet)""", f"""
    COPY (SELECT customer_id, month,
                 round(sum(CASE WHEN amount > 0 THEN amount ELSE 0 END), 2) AS income,
                 round(sum(CASE WHEN amount < 0 THEN -amount ELSE 0 END), 2) AS outflow,
                 arg_max(balance_after, {{'d': booking_date, 'id': txn_id}}) AS end_balance,
                 count(*)::INT AS n_tx
          FROM '{out}/bronze.parquet' GROUP BY customer_id, month
    ) TO '{out}/monthly_account.parquet' (FORMAT parquet)"""]


def personality_sql(coefficients: dict[str, tuple[float, ...]], out: Path) -> str:
    """Monthly spend -> spend-share-weighted mean of the classes' Big Five coefficients."""
    coefs = _values([(name, *map(float, big5)) for name, big5 in coefficients.items()],
                    f"c(txn_class, {', '.join(TRAITS)})")
    traits = ", ".join(f"sum(spend * {t}) / sum(spend) AS {t}" for t in TRAITS)
    return f"""
    COPY (SELECT customer_id, month, sum(spend) AS total_spend, {traits}
          FROM '{out}/monthly_spend.parquet' JOIN {coefs} USING (txn_class)
          WHERE spend > 0 GROUP BY customer_id, month
    ) TO '{out}/personality.parquet' (FORMAT parquet)"""


def references_sql(cfg: Settings, as_of, out: Path) -> str:
    """Each customer's reference month, as ``prep/reference.py``: their first loan's month up
    to ``as_of`` (``sequences.reference: loan_date``), else ``as_of``."""
    customers = (f"SELECT DISTINCT customer_id FROM '{out}/monthly_account.parquet' "
                 f"WHERE month <= DATE '{as_of}'")
    if cfg.sequences.reference == "as_of":
        return f"CREATE OR REPLACE TEMP TABLE refs AS SELECT customer_id, DATE '{as_of}' AS reference_month " \
               f"FROM ({customers})"
    loans = cfg.data_path(cfg.source.loans)
    return f"""
    CREATE OR REPLACE TEMP TABLE refs AS
    WITH first AS (SELECT trim(customer_id) AS customer_id,
                          min(date_trunc('month', try_strptime(trim(loan_date), '%Y-%m-%d'))::DATE) AS m
                   FROM read_csv('{loans}/*.csv', header = true, all_varchar = true)
                   WHERE date_trunc('month', try_strptime(trim(loan_date), '%Y-%m-%d')) <= DATE '{as_of}'
                   GROUP BY 1)
    SELECT customer_id, coalesce(m, DATE '{as_of}') AS reference_month
    FROM ({customers}) LEFT JOIN first USING (customer_id)"""


def per_month_sql(spend_classes: list[str], window: int, out: Path) -> str:
    """customer x month of the customer's window: the same 3 x classes + 3 account + 2
    calendar features, this month's traits and masks."""
    idx = range(len(spend_classes))
    pivot = ", ".join(
        [f"sum(spend) FILTER (WHERE txn_class = '{c}') AS s{i}" for i, c in enumerate(spend_classes)]
        + [f"sum(n_tx) FILTER (WHERE txn_class = '{c}') AS n{i}" for i, c in enumerate(spend_classes)])
    features = ", ".join(
        [f"ln(1 + coalesce(s{i}, 0))" for i in idx]
        + [f"CASE WHEN coalesce(total, 0) > 0 THEN coalesce(s{i}, 0) / total ELSE 0 END" for i in idx]
        + [f"ln(1 + coalesce(n{i}, 0))" for i in idx]
        + ["ln(1 + coalesce(income, 0))", "ln(1 + coalesce(outflow, 0))",
           "sign(coalesce(end_balance, 0)) * ln(1 + abs(coalesce(end_balance, 0)))"]
        + [f"CASE WHEN income IS NOT NULL THEN {fn}((month(month) - 1) * 2 * pi() / 12) ELSE 0 END"
           for fn in ("sin", "cos")])
    return f"""
    CREATE OR REPLACE TEMP TABLE per_month AS
    WITH cells AS (SELECT customer_id, reference_month, t::INT AS t,
                          (reference_month - to_months(({window - 1} - t)::INT))::DATE AS month
                   FROM refs CROSS JOIN range({window}) AS r(t)),
    account AS (SELECT customer_id, month, income, outflow, end_balance
                FROM '{out}/monthly_account.parquet' SEMI JOIN cells USING (customer_id, month)),
    class_cols AS (SELECT customer_id, month, {pivot}, sum(spend) AS total
              FROM '{out}/monthly_spend.parquet' SEMI JOIN cells USING (customer_id, month)
              GROUP BY customer_id, month),
    joined AS (SELECT * FROM cells SEMI JOIN account USING (customer_id)),
    steps AS (SELECT customer_id, reference_month, t, list_value({features})::FLOAT[] AS x,
                     {', '.join(f'{t} AS y{i}' for i, t in enumerate(TRAITS))},
                     (income IS NOT NULL)::FLOAT AS active
              FROM joined LEFT JOIN class_cols USING (customer_id, month)
              LEFT JOIN account USING (customer_id, month)
              LEFT JOIN (SELECT customer_id, month, {', '.join(TRAITS)}
                         FROM '{out}/personality.parquet') USING (customer_id, month))
    SELECT customer_id, reference_month, t, x, active, (y0 IS NOT NULL)::FLOAT AS trait_mask,
           list_value({', '.join(f'coalesce(y{i}, 0)' for i in range(len(TRAITS)))})::FLOAT[] AS y
    FROM steps"""


def sequences_sql(cfg: Settings, as_of, out: Path) -> str:
    """per_month -> one row per customer: flat [T x F] features, [T x 5] traits, flags, split."""
    seq, split, seed = cfg.sequences, cfg.sequences.split, cfg.seed
    u = f"(hash(customer_id, {seed}) % 1000000) / 1000000.0"
    return f"""
    COPY (
      WITH s AS (SELECT customer_id, reference_month, flatten(list(x ORDER BY t)) AS features,
                        flatten(list(y ORDER BY t)) AS traits,
                        list(trait_mask ORDER BY t) AS trait_mask, list(active ORDER BY t) AS active
                 FROM per_month GROUP BY customer_id, reference_month)
      SELECT customer_id, DATE '{as_of}' AS as_of, reference_month, features, traits, trait_mask, active,
             ({seq.window_months} - list_position(active, 1.0) + 1)::INT AS length,
             list_sum(active)::INT AS n_active_months,
             n_active_months >= {seq.min_months} AS eligible,
             CASE WHEN n_active_months < {seq.min_months} THEN 'short_history: ' || n_active_months
                  || ' active months < min_months {seq.min_months}' END AS reason,
             CASE WHEN {u} < {split.train} THEN 'train'
                  WHEN {u} < {split.train + split.validation} THEN 'validation' ELSE 'test' END AS split
      FROM s
    ) TO '{out}/sequences.parquet' (FORMAT parquet)"""


def feature_stats_sql(names: list[str], out: Path) -> str:
    """Mean and std of each feature over active months of eligible training customers."""
    return f"""
    COPY (
      WITH train AS (SELECT customer_id FROM '{out}/sequences.parquet' WHERE split = 'train' AND eligible),
      cells AS (SELECT generate_subscripts(x, 1) - 1 AS i, unnest(x) AS v
                FROM per_month JOIN train USING (customer_id) WHERE active > 0),
      stats AS (SELECT i, avg(v) AS mean, stddev_pop(v) AS std FROM cells GROUP BY i)
      SELECT n.i AS index, n.feature, coalesce(mean, 0) AS mean,
             CASE WHEN std > 1e-6 THEN std ELSE 1 END AS std
      FROM {_values(list(enumerate(names)), 'n(i, feature)')} LEFT JOIN stats USING (i)
    ) TO '{out}/feature_stats.parquet' (FORMAT parquet)"""


def duckdb_reference(cfg: Settings, out: Path) -> float:
    """Seconds DuckDB (2 threads) takes for work comparable to ours, landing CSV -> Parquet.

    Same as ours: read every landing CSV as strings; trim; parse date, amount and balance;
    keep rows with non-empty customer and txn ids, a date in the window and not after
    ``ingest.today``, a finite amount within the limit, a known currency and class; write
    bronze; monthly spend and count per customer x month x spend class; monthly income,
    outflow and end balance (last ``balance_after`` by booking_date, txn_id); the spending
    personality (spend-share-weighted Big Five coefficients from the taxonomy); each
    customer's reference month (``sequences.reference``: the first loan's month from the
    loan book, or ``as_of``); per-month features (3 per spend class + 3 account + 2 calendar),
    each month's traits and masks over the T months up to it; per-customer lists ordered by
    month, flattened, with length,
    active-month count, eligibility and a hashed split; feature mean/std over training
    customers. Every table is written to Parquet and read back by the next step.

    Differs: Parquet files instead of Delta tables (no transaction log, no commit, no
    versions); bronze is written, not MERGEd on (source, txn_id); invalid rows are dropped,
    not quarantined with a reason and raw row, and no row accounting (read = valid +
    quarantined) is counted; no within-batch duplicate txn_id check (the data is clean);
    the split hash is DuckDB's, not xxhash64; the in-window table stays in memory as
    Spark's ``persist`` does.
    """
    out.mkdir(parents=True)
    taxonomy = load_taxonomy(cfg.conf_path(cfg.taxonomy))
    classes, spend = [c.name for c in taxonomy.classes], taxonomy.spend_classes
    con = duckdb.connect(config={"threads": CORES, "temp_directory": str(out / "tmp")})

    def sequences():
        as_of = con.sql(f"SELECT max(month) FROM '{out}/monthly_account.parquet'").fetchall()[0][0]
        con.execute(references_sql(cfg, as_of, out))
        con.execute(per_month_sql(spend, cfg.sequences.window_months, out))
        con.execute(sequences_sql(cfg, as_of, out))
        con.execute(feature_stats_sql(feature_names(spend), out))
        con.execute("DROP TABLE per_month; DROP TABLE refs")

    steps = {
        "ingest": lambda: con.execute(bronze_sql(cfg, classes, out)),
        "aggregate": lambda: [con.execute(q) for q in aggregate_sql(spend, out)],
        "personality": lambda: con.execute(personality_sql(taxonomy.coefficients(), out)),
        "sequences": sequences,
    }
    try:
        total = sum(timed(f"duckdb {name}", step)[0] for name, step in steps.items())
    finally:
        con.close()
    print(f"  duckdb total {total:.1f} s", flush=True)
    return total
