"""The evaluation of one lakehouse at its latest ``as_of``: segment quality per feature
variant, downstream tasks against bespoke models, the linear-surrogate explanation, a 2-D
map, and the paper's claims checked against the numbers.

The Spark side (``frames``) brings a seeded sample of at most ``evaluate.sample_rows``
customers to the driver; everything after that is scikit-learn and torch on that sample.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from microseg.evaluate import coles, downstream, frames, metrics, surrogate, targets
from microseg.evaluate.e2e import lstm_predictor
from microseg.evaluate.result import Evaluation
from microseg.prep import personality
from microseg.prep.sequences import feature_names, window_months
from microseg.taxonomy import TRAITS

log = logging.getLogger("microseg.evaluate")
LABELS = {"lstm": "LSTM features", "feedforward": "feed-forward features", "traits": "raw traits"}


def _variant_frames(ctx, variant: str, as_of: dt.date) -> tuple[DataFrame, DataFrame] | None:
    """(vectors, segments) of a variant at ``as_of``; None when the variant was not built."""
    from microseg.stages.context import segment_inputs, variant_key

    seg_key = variant_key("segments", variant)
    if not ctx.tables.exists(seg_key):
        return None
    sub = ctx.for_variant(variant)
    vectors, _, _ = segment_inputs(sub, as_of)
    segs = ctx.tables.read(seg_key).where(F.col("as_of") == F.lit(as_of))
    return vectors, segs


def _collect(ctx, variants: list[str], as_of: dt.date) -> tuple[pd.DataFrame, dict[str, str], dict[str, int]]:
    """The sample as one pandas row per customer: split, labels, planted truth, window
    traits and monthly traits, each variant's vector and segment, hand-made features, and
    the sequence; the model version of each variant built; the segment sizes
    (``variant:segment`` -> customers)."""
    cfg, tables = ctx.cfg, ctx.tables
    months = window_months(as_of, cfg.sequences.window_months)
    seqs = tables.read("sequences")
    base = frames.sample_ids(seqs, cfg.evaluate.sample_rows, cfg.seed)
    if tables.exists("labels"):
        base = base.join(tables.read("labels").select("customer_id", "loan_default", "liquidity_class"),
                         "customer_id", "left")
    if tables.exists("ground_truth"):
        base = base.join(tables.read("ground_truth").select("customer_id", "coarse_group", "micro_segment"),
                         "customer_id", "left")
    pers = tables.read("personality")
    traits = personality.window_traits(pers, months).withColumnRenamed("embedding", "traits")
    base = (base.join(traits, "customer_id", "left")
            .join(frames.trait_months(pers, months), "customer_id", "left"))
    built, sizes = {}, {}
    for v in variants:
        got = _variant_frames(ctx, v, as_of)
        if got is None:
            log.warning("variant %s has no segments at %s; run `microseg report` (compare stage) first", v, as_of)
            continue
        vectors, segs = got
        sizes.update({f"{v}:{r['segment']}": r["count"] for r in segs.groupBy("segment").count().collect()})  # k rows
        base = (base.join(vectors.select("customer_id", F.col("embedding").alias(f"vec_{v}")), "customer_id", "left")
                .join(segs.select("customer_id", F.col("segment").alias(f"seg_{v}"),
                                  F.col("coarse_segment").alias(f"coarse_{v}")), "customer_id", "left"))
        built[v] = str(segs.select("model_version").head()[0])
    spend_classes = ctx.taxonomy.spend_classes
    bespoke = frames.bespoke_features(tables.read("monthly_spend"), tables.read("monthly_account"),
                                      spend_classes, months)
    base = base.join(bespoke, "customer_id", "left").join(seqs.select("customer_id", "features", "active"),
                                                          "customer_id")
    return base.orderBy("customer_id").toPandas(), built, sizes   # the sample: <= ~evaluate.sample_rows rows


def _granularity(pdf: pd.DataFrame, variants: list[str], sizes: dict[str, int], seed: int) -> pd.DataFrame:
    rows = []
    traits = frames.to_matrix(pdf, "traits")
    for v in variants:
        labels = pdf[f"seg_{v}"].to_numpy()
        x = frames.to_matrix(pdf, f"vec_{v}")
        counts = np.array([n for key, n in sizes.items() if key.startswith(f"{v}:")])
        row = {"variant": v, "k": int(len(counts)), **metrics.cluster_quality(x, labels, seed),
               "trait_var_within": metrics.within_variance_share(traits, labels),
               "size_min": int(counts.min()), "size_median": float(np.median(counts)), "size_max": int(counts.max()),
               "ari_coarse": float("nan"), "ari_micro": float("nan"), "ari_micro_at_planted_k": float("nan")}
        if "micro_segment" in pdf:
            planted = pdf["micro_segment"].to_numpy()
            row["ari_coarse"] = metrics.ari(pdf[f"coarse_{v}"].to_numpy(), pdf["coarse_group"].to_numpy())
            row["ari_micro"] = metrics.ari(labels, planted)
            row["ari_micro_at_planted_k"] = metrics.ari(metrics.kmeans_labels(x, len(np.unique(planted)), seed),
                                                        planted)
        rows.append(row)
    return pd.DataFrame(rows)


def _k_curves(ctx, variants: list[str]) -> pd.DataFrame:
    """The silhouette curve logged by each variant's latest segmentation run."""
    import mlflow

    rows = []
    for v in variants:
        runs = mlflow.search_runs(filter_string=f"tags.features = '{v}'", order_by=["start_time DESC"],
                                  max_results=1, output_format="list")
        if not runs:
            continue
        try:
            curve = mlflow.artifacts.load_dict(f"{runs[0].info.artifact_uri}/silhouette_by_k.json")
        except Exception:   # k was fixed in config: no curve was logged
            continue
        rows += [{"variant": v, "k": int(k), "silhouette": s} for k, s in curve.items()]
    return pd.DataFrame(rows, columns=["variant", "k", "silhouette"])


def _downstream(ctx, pdf: pd.DataFrame, variants: list[str], seqs: np.ndarray, active: np.ndarray,
                scaling) -> pd.DataFrame:
    cfg = ctx.cfg
    predict = downstream.tabular_predictor(cfg.seed)
    models = {LABELS[v]: (frames.to_matrix(pdf, f"vec_{v}"), predict) for v in variants}
    bespoke_cols = [c for c in pdf.columns if c.startswith("share__")] + [
        "recency_months", "active_months", "frequency", "monetary", "balance_mean", "balance_std", "balance_min",
        "balance_max", "income_mean", "income_std", "outflow_mean", "outflow_std"]
    models["bespoke GBM (RFM, class shares, balances)"] = (pdf[bespoke_cols].to_numpy(np.float64), predict)
    models["bespoke LSTM (end-to-end)"] = (seqs, lstm_predictor(
        scaling, cfg.model.hidden, cfg.evaluate.e2e_epochs, cfg.seed))
    if coles.available():   # the optional self-supervised peer (scripts/coles-env.sh)
        train = (pdf["split"] != "test").to_numpy()
        emb = coles.coles_embeddings(seqs, active, train, cfg.seed, hidden=cfg.model.hidden)
        models["CoLES embeddings (self-supervised)"] = (emb, predict)
    return downstream.compare(pdf, models, cfg.evaluate.bootstrap, cfg.seed)


def _targets(ctx, pdf: pd.DataFrame, seqs: np.ndarray, scaling) -> pd.DataFrame:
    """This month's vs next month's traits as the LSTM target, trained alike on the sample."""
    from microseg.stages.context import encoder_spec

    cfg, m = ctx.cfg, ctx.cfg.model
    y, mask = targets.monthly_targets(pdf["trait_months"], cfg.sequences.window_months)
    seeds = [cfg.seed + i for i in range(cfg.evaluate.target_seeds)]
    return targets.compare(pdf, seqs, y, mask, scaling, encoder_spec(m, seqs.shape[2], kind="lstm"),
                           cfg.evaluate.target_epochs, m.batch_size, m.learning_rate, seeds)


def _explain(pdf: pd.DataFrame, seqs: np.ndarray, active: np.ndarray, names: list[str]) -> tuple[dict, pd.DataFrame]:
    inputs, input_names = surrogate.window_inputs(seqs.astype(np.float64), active, names)   # exact: float32 data
    model, fidelity = surrogate.fit(inputs, frames.to_matrix(pdf, "vec_lstm"), (pdf["split"] != "test").to_numpy())
    return fidelity, surrogate.drivers(model, inputs, pdf["seg_lstm"].to_numpy(), input_names)


def _map(pdf: pd.DataFrame, variants: list[str], rows: int, seed: int) -> pd.DataFrame:
    from sklearn.manifold import TSNE

    pick = np.random.default_rng(seed).permutation(len(pdf))[:rows]
    out = []
    for v in variants:
        x = frames.to_matrix(pdf.iloc[pick], f"vec_{v}")
        xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, len(x) - 1.0)).fit_transform(x)
        out.append(pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "segment": pdf[f"seg_{v}"].iloc[pick].to_numpy(),
                                 "coarse_segment": pdf[f"coarse_{v}"].iloc[pick].to_numpy(), "variant": v}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["x", "y", "segment", "coarse_segment", "variant"])


def _profiles(ctx, as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    prof = ctx.tables.read("segment_profiles").where(F.col("as_of") == F.lit(as_of))
    mix = (prof.select("segment", F.explode("spend_mix").alias("txn_class", "share"))
           .orderBy("segment", "txn_class").toPandas())                                    # k x classes rows
    cols = ["segment", "coarse_segment", "customers", *TRAITS,
            *[c for c in ("default_rate", "liquidity_index") if c in prof.columns]]
    return prof.select(*cols).orderBy("segment").toPandas(), mix                           # k rows


def check_claims(granularity: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims as checks with the numbers behind each verdict (None: not checkable
    here, e.g. no planted truth or a variant missing)."""
    g = granularity.set_index("variant")
    rows = []

    def ari(v: str, col: str) -> float:
        return float(g.loc[v, col]) if v in g.index else float("nan")

    lstm_m, ff_m, tr_m = ari("lstm", "ari_micro"), ari("feedforward", "ari_micro"), ari("traits", "ari_micro")
    ff_c = ari("feedforward", "ari_coarse")
    held = None if np.isnan([lstm_m, ff_m, tr_m]).any() else bool(lstm_m > max(ff_m, tr_m))
    rows.append({"claim": "LSTM features separate the planted micro-segments better than feed-forward features "
                          "or raw traits (at the chosen k)", "held": held,
                 "evidence": f"ARI vs planted micro-segments: LSTM {lstm_m:.3f}, feed-forward {ff_m:.3f}, "
                             f"raw traits {tr_m:.3f}"})
    at_k = [ari(v, "ari_micro_at_planted_k") for v in ("lstm", "feedforward", "traits")]
    held = None if np.isnan(at_k).any() else bool(at_k[0] > max(at_k[1:]))
    rows.append({"claim": "LSTM features separate the planted micro-segments better (k = the planted number)",
                 "held": held, "evidence": "ARI vs planted micro-segments, KMeans at the planted k on the sample: "
                                           f"LSTM {at_k[0]:.3f}, feed-forward {at_k[1]:.3f}, raw traits {at_k[2]:.3f}"})
    held = None if np.isnan([ff_c, ff_m, lstm_m]).any() else bool(ff_c > ff_m and ff_m < lstm_m)
    rows.append({"claim": "Feed-forward features recover only the coarse groups", "held": held,
                 "evidence": f"feed-forward ARI vs planted coarse groups {ff_c:.3f}, vs micro-segments {ff_m:.3f} "
                             f"(LSTM vs micro-segments {lstm_m:.3f})"})
    for task, metric in (("default", "roc_auc"), ("liquidity", "macro_f1")):
        r = results[(results["task"] == task) & (results["metric"] == metric)].set_index("model")
        bespoke = r[r.index.str.startswith("bespoke")]
        if LABELS["lstm"] not in r.index or bespoke.empty:
            rows.append({"claim": f"LSTM features do as well as bespoke models on {task} ({metric})", "held": None,
                         "evidence": "not measured: no labels for this task, or a model missing"})
            continue
        best = bespoke["value"].idxmax()
        mine = r.loc[LABELS["lstm"]]
        rows.append({"claim": f"LSTM features do as well as bespoke models on {task} ({metric})",
                     "held": bool(mine["ci_high"] >= bespoke.loc[best, "value"]),
                     "evidence": f"LSTM features {mine['value']:.3f} [{mine['ci_low']:.3f}, {mine['ci_high']:.3f}] "
                                 f"vs {best} {bespoke.loc[best, 'value']:.3f} "
                                 f"(held: the best bespoke value lies within or below the LSTM interval)"})
    return pd.DataFrame(rows, columns=["claim", "held", "evidence"])


def evaluate(ctx, as_of: dt.date) -> Evaluation:
    from microseg import tracking
    from microseg.stages.context import feature_scaling

    cfg = ctx.cfg
    pdf, versions, sizes = _collect(ctx, list(cfg.evaluate.variants), as_of)
    built = list(versions)
    if "lstm" not in built:
        raise RuntimeError("no LSTM segments to evaluate; run the whole flow first (`make demo` or "
                           "`microseg run --stage all`)")
    needed = [f"vec_{v}" for v in built] + [f"seg_{v}" for v in built] + ["traits"]
    complete = pdf[needed].notna().all(axis=1)
    pdf = pdf[complete].reset_index(drop=True)
    log.info("evaluation sample: %d customers (%d without every variant left out)", len(pdf), int((~complete).sum()))
    granularity = _granularity(pdf, built, sizes, cfg.seed)
    names = feature_names(ctx.taxonomy.spend_classes)
    seqs = frames.to_matrix(pdf, "features").reshape(len(pdf), cfg.sequences.window_months, len(names))
    seqs, active = seqs.astype(np.float32), frames.to_matrix(pdf, "active")   # built once, for every model below
    scaling = feature_scaling(ctx, ctx.tables.version("sequences"))
    results = _downstream(ctx, pdf, built, seqs, active, scaling)
    dataset = "generated" if ctx.tables.exists("ground_truth") else cfg.source.adapter
    results.insert(0, "dataset", dataset)
    fidelity, drivers = _explain(pdf, seqs, active, names)
    target_choice = _targets(ctx, pdf, seqs, scaling)
    profiles, mix = _profiles(ctx, as_of)
    meta = {"as_of": str(as_of), "dataset": dataset, "customers_in_sample": int(len(pdf)),
            "left_out_incomplete": int((~complete).sum()), "variants": built,
            "target_configured": cfg.sequences.target,
            "model_versions": versions,
            "table_versions": ctx.tables.versions(["sequences", "feature_stats", "labels", "personality",
                                                   "segments", "embeddings"]),
            "code_version": tracking.code_version(), "seed": cfg.seed,
            "coles": "included" if coles.available() else "not installed (optional extra: scripts/coles-env.sh)"}
    return Evaluation(granularity=granularity, k_curves=_k_curves(ctx, built), downstream=results,
                      surrogate=fidelity, drivers=drivers,
                      map_points=_map(pdf, built, cfg.evaluate.map_rows, cfg.seed),
                      profiles=profiles, spend_mix=mix, claims=check_claims(granularity, results),
                      targets=target_choice, meta=meta)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def flat_metrics(ev: Evaluation) -> dict[str, float]:
    """The headline numbers as MLflow metrics: ``<variant>.<measure>`` and
    ``<dataset>.<task>.<model>.<metric>`` (NaN left out)."""
    out = {}
    for row in ev.granularity.to_dict(orient="records"):
        out.update({f"{row['variant']}.{k}": float(v) for k, v in row.items() if k != "variant"})
    for row in ev.downstream.to_dict(orient="records"):
        out[f"{row['dataset']}.{row['task']}.{_slug(row['model'])}.{row['metric']}"] = float(row["value"])
    out["surrogate.r2"] = float(ev.surrogate["r2"])
    if not ev.targets.empty:
        for row in targets.summary(ev.targets).to_dict(orient="records"):
            out[f"target_{row['target']}.{row['measure']}"] = float(row["mean"])
    return {k: v for k, v in out.items() if not np.isnan(v)}


def save(ev: Evaluation, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ev.to_json())


def load(path: Path) -> Evaluation:
    return Evaluation.from_dict(json.loads(path.read_text()))
