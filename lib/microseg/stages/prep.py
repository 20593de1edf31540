"""Stages from the source to the model's input: generate, ingest, aggregate, labels,
personality, sequences."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from microseg import tracking
from microseg.config import ConfigError
from microseg.prep import aggregate, personality, reference, sequences
from microseg.prep.ingest import check_once, reconcile, split
from microseg.prep.pseudonymise import (configured_pseudonym, keyed_hmac, pseudonym_key, pseudonymise,
                                        pseudonymise_raw_rows)
from microseg.stages.context import Context


def generate_stage(ctx: Context) -> dict:
    """The synthetic bank: landing files, loan book and ``ground_truth``; a ConfigError,
    before anything is written, unless ``source.adapter`` is ``generator``."""
    from microseg.sources import generator

    if not ctx.cfg.source.synthetic:
        raise ConfigError(f"source.adapter is {ctx.cfg.source.adapter!r}, a real source: the generate stage "
                          "writes a synthetic bank (landing files, raw ground truth) only for source.adapter: "
                          "generator; skip generate, or set source.adapter=generator to try synthetic data")
    cfg = ctx.cfg.generator
    tx, truth = generator.generate(ctx.spark, cfg, ctx.cfg.seed, ctx.taxonomy)
    ctx.tables.overwrite("ground_truth", truth)
    truth = ctx.tables.read("ground_truth")
    landing = ctx.cfg.data_path(cfg.landing)
    generator.write_landing(tx, generator.loan_book(truth, ctx.cfg.seed), landing, cfg.bad_rows, ctx.cfg.seed)
    return {"customers": cfg.customers, "landing": landing}


# Bronze keeps file statistics of these only (a customer's rows, a date range; the month is
# its partition): statistics of all 12 columns cost a third of the bronze write.
BRONZE_STATS = ["customer_id", "booking_date"]


def ingest_stage(ctx: Context) -> dict:
    """Read the configured source, MERGE valid rows into bronze, quarantine the rest.

    Accounting: each file's rows are counted apart from the parser (its lines, less the
    header) and must equal its rows kept plus quarantined, or the ingest fails naming the
    file before anything is written; of the valid rows, those whose (source, month,
    txn_id) bronze already holds are counted as already present, not re-inserted (the
    MERGE reads only the batch's months: bronze is partitioned by month). The batch's
    quarantine rows replace any from an earlier run of the same batch; with
    ``ingest.quarantine_retention_days``, older rows and Delta files are then removed.
    With ``ingest.pseudonymise``, customer and transaction ids become pseudonyms before
    validation, and so do the identifying fields inside the quarantine's raw rows.
    """
    from microseg.sources.registry import read_batch

    rules = ctx.cfg.ingest
    batch = read_batch(ctx.spark, ctx.cfg, ctx.taxonomy)
    today = dt.date.fromisoformat(rules.today) if rules.today else dt.date.today()
    ctx.tables.commit_note = json.dumps({"stage": "ingest", "batch_id": batch.batch_id,
                                         "code_version": tracking.code_version()})
    classes = [c.name for c in ctx.taxonomy.classes]
    rows = batch.rows
    if rules.pseudonymise:
        pseudonym = keyed_hmac(ctx.spark, pseudonym_key(rules, ctx.spark))
        rows = pseudonymise(rows, ["customer_id", "txn_id"], pseudonym)
    checked = check_once(rows, rules, classes, today)
    try:
        valid_month = F.when(F.col("_reason").isNull(), F.trunc("booking_date", "month")).alias("month")
        counts = checked.groupBy("source_file", "_reason", valid_month).count().collect()
        # per file: one row per reason and one per month of valid rows
        per_file, reasons, months = Counter(), Counter(), set()
        for r in counts:
            per_file[r["source_file"]] += r["count"]
            reasons[r["_reason"]] += r["count"]
            months.add(r["month"])
        months.discard(None)
        expected = batch.expected_rows(ctx.spark)   # counted apart from the parser
        reconcile(batch.batch_id, expected, per_file)
        valid = reasons.pop(None, 0)
        quarantined = sum(reasons.values())
        good, bad = split(checked, batch.source, batch.batch_id, rules, classes, today)
        if rules.pseudonymise:
            bad = pseudonymise_raw_rows(bad, list(batch.identifying), pseudonym)
        inserted = ctx.tables.merge_new("transactions", good, ["source", "month", "txn_id"],
                                        within={"month": sorted(months)}, partition_by=["month"],
                                        stats_columns=BRONZE_STATS)
        ctx.tables.replace_where("quarantine", bad, f"batch_id = '{batch.batch_id}'")
    finally:
        checked.unpersist()
    landed = ctx.tables.read("quarantine").where(F.col("batch_id") == batch.batch_id).count()
    if landed != quarantined or inserted > valid:
        raise RuntimeError(f"ingest of batch {batch.batch_id} does not add up: {quarantined} rows to "
                           f"quarantine but {landed} landed; {inserted} inserted of {valid} valid")
    expired = 0
    if rules.quarantine_retention_days:
        expired = expire_quarantine(ctx, today, rules.quarantine_retention_days)
    return {"batch_id": batch.batch_id, "files": len(batch.files), "rows_read": sum(expected.values()),
            "rows_valid": valid, "rows_quarantined": quarantined, "rows_inserted": inserted,
            "rows_already_present": valid - inserted, "quarantine_reasons": dict(reasons),
            "quarantine_rows_expired": expired}


def expire_quarantine(ctx: Context, today: dt.date, days: int) -> int:
    """Remove quarantine rows quarantined more than ``days`` before ``today``, then keep
    the table's Delta history (removed files, log entries) for ``days`` only; returns the
    rows removed."""
    cutoff = today - dt.timedelta(days=days)
    removed = ctx.tables.delete_where("quarantine", f"quarantined_on < DATE'{cutoff}'")
    ctx.tables.keep_history("quarantine", days)
    return removed


def aggregate_stage(ctx: Context) -> dict:
    tx = ctx.tables.read("transactions")
    kinds = aggregate.class_kinds(ctx.spark, ctx.taxonomy)
    ctx.tables.overwrite("monthly_spend", aggregate.monthly_spend(tx, kinds))
    ctx.tables.overwrite("monthly_account", aggregate.monthly_account(tx))
    return {"monthly_spend_version": ctx.tables.version("monthly_spend")}


def _loan_book(ctx: Context) -> DataFrame | None:
    """The source's loans (``read_loans``) on the same pseudonyms as bronze, or None."""
    from microseg.sources.registry import read_loans

    loans = read_loans(ctx.spark, ctx.cfg)
    pseudonym = configured_pseudonym(ctx.cfg.ingest, ctx.spark)
    return pseudonymise(loans, ["customer_id"], pseudonym) if loans is not None and pseudonym else loans


def _references(ctx: Context, account: DataFrame, loans: DataFrame | None) -> tuple[dt.date, DataFrame]:
    """The run's month and each customer's reference month (customer_id, reference_month),
    persisted: the one rule the labels and sequences stages share."""
    cfg = ctx.cfg.sequences
    as_of = reference.run_month(account, cfg.as_of)
    dates = reference.reference_dates(cfg.reference, loans)
    return as_of, reference.customer_references(account, dates, as_of).persist()


def labels_stage(ctx: Context) -> dict:
    """Forward labels after each customer's reference month; figures: customers and how many
    got each label, per reference month, and the customers without balances (none at all:
    ``liquidity_unavailable`` says why, and a warning is logged)."""
    from microseg.prep.labels import balance_coverage, balance_gap, customer_labels, liquidity_unavailable, log

    cfg = ctx.cfg.labels
    account = ctx.tables.read("monthly_account")
    customers, without = balance_coverage(account)
    gap = balance_gap(customers, without)
    if gap:
        log.warning("labels: %s", gap)
    loans = _loan_book(ctx)
    as_of, refs = _references(ctx, account, loans)
    out = customer_labels(account, refs, loans, cfg.liquidity_classes, cfg.horizon_months,
                          undated_count=ctx.cfg.sequences.reference == "as_of")
    version = ctx.tables.overwrite("labels", out)
    refs.unpersist()
    per_month = (ctx.tables.read("labels", version=version).groupBy("reference_month")
                 .agg(F.count("*").alias("customers"), F.count("liquidity_index").alias("liquidity"),
                      F.count("loan_default").alias("loan_default"))
                 .orderBy("reference_month").collect())   # one row per reference month: small
    return {"labels_version": version, "has_loans": loans is not None, "as_of": str(as_of),
            "reference": ctx.cfg.sequences.reference, "horizon_months": cfg.horizon_months,
            "customers": sum(r.customers for r in per_month),
            "liquidity_labelled": sum(r.liquidity for r in per_month),
            "default_labelled": sum(r.loan_default for r in per_month),
            "customers_without_balances": without,
            "liquidity_unavailable": liquidity_unavailable(customers, without),
            "by_reference_month": {str(r.reference_month): [r.customers, r.liquidity, r.loan_default]
                                   for r in per_month}}


def personality_stage(ctx: Context) -> dict:
    coefs = personality.coefficients(ctx.spark, ctx.taxonomy)
    out = personality.spending_personality(ctx.tables.read("monthly_spend"), coefs)
    ctx.tables.overwrite("personality", out)
    return {"personality_version": ctx.tables.version("personality")}


def sequences_stage(ctx: Context) -> dict:
    """Each customer's window up to their reference month; the scaling fitted on training
    customers' windows."""
    cfg = ctx.cfg.sequences
    account = ctx.tables.read("monthly_account")
    as_of, refs = _references(ctx, account, _loan_book(ctx) if cfg.reference != "as_of" else None)
    classes = ctx.taxonomy.spend_classes
    per_month = sequences.monthly_features(
        ctx.spark, ctx.tables.read("monthly_spend"), account, ctx.tables.read("personality"),
        classes, refs, cfg.window_months).persist()
    seqs = sequences.build_sequences(per_month, cfg, ctx.cfg.seed, as_of)
    version = ctx.tables.overwrite("sequences", seqs)
    stats = sequences.feature_stats(per_month, ctx.tables.read("sequences", version=version),
                                    sequences.feature_names(classes))
    ctx.tables.overwrite("feature_stats", stats.withColumn("sequences_version", F.lit(version))
                         .withColumn("taxonomy_version", F.lit(ctx.taxonomy.version)))
    per_month.unpersist()
    refs.unpersist()
    at = (ctx.tables.read("sequences", version=version)
          .groupBy((F.col("reference_month") == F.col("as_of")).alias("at_as_of")).count().collect())
    counts = {r.at_as_of: r["count"] for r in at}   # two rows at most
    return {"as_of": str(as_of), "reference": cfg.reference, "sequences_version": version,
            "customers_at_as_of": counts.get(True, 0), "customers_before_as_of": counts.get(False, 0)}
