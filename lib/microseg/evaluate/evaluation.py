"""The evaluation of one lakehouse at its latest ``as_of``: segment quality per feature
variant, the encoder objectives against the simple references, downstream tasks by
repeated stratified k-fold against bespoke models (paired differences on the same folds),
the linear-surrogate explanation, a 2-D map, and the claims checked against the numbers.

The Spark side brings a seeded sample of at most ``evaluate.sample_rows`` eligible
customers to the driver; everything after that is scikit-learn and torch on that sample.
Every feature set is computed from the sample's own ``gold.sequences`` rows, so each
customer's features end at their reference month.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from microseg.evaluate import coles, downstream, encoders, frames, metrics, references, surrogate, truth
from microseg.evaluate.e2e import lstm_predictor
from microseg.evaluate.result import Evaluation
from microseg.prep.labels import balance_coverage, liquidity_unavailable
from microseg.prep.sequences import feature_names
from microseg.score.segment import degeneracy
from microseg.taxonomy import TRAITS

log = logging.getLogger("microseg.evaluate")
LABELS = {"lstm": "LSTM features", "feedforward": "feed-forward features", "traits": "raw traits"}
LIFT = "bespoke GBM + LSTM features"
# the same two inputs with the linear probe (downstream.linear_predictor): like against like
PROBE_LSTM, PROBE_BESPOKE = "LSTM features (linear probe)", "bespoke aggregates (linear probe)"
MARGIN = {"roc_auc": 0.02, "pr_auc": 0.05, "macro_f1": 0.02}   # how far below bespoke "as good" may reach
ARI_MARGIN = 0.02                                               # a win on ARI must clear this


def _jobs(cfg) -> int:
    """``evaluate.jobs``, with ``auto`` as the cores this process may use."""
    return len(os.sched_getaffinity(0)) if cfg.jobs == "auto" else cfg.jobs


@contextmanager
def _timed(seconds: dict[str, float], phase: str):
    """Records the seconds the block took as ``seconds[phase]`` and logs them."""
    start = time.perf_counter()
    yield
    seconds[phase] = round(time.perf_counter() - start, 1)
    log.info("evaluate: %s in %.1f s", phase, seconds[phase])


def _variant_frames(ctx, variant: str, as_of: dt.date) -> tuple[DataFrame, DataFrame] | None:
    """(vectors, segments) of a variant at ``as_of``; None when the variant was not built."""
    from microseg.stages.context import segment_inputs, variant_key

    seg_key = variant_key("segments", variant)
    if not ctx.tables.exists(seg_key):
        return None
    vectors, _, _ = segment_inputs(ctx.for_variant(variant), as_of)
    segs = ctx.tables.read(seg_key).where(F.col("as_of") == F.lit(as_of))
    return vectors, segs


def _collect(ctx, variants: list[str], as_of: dt.date, known: DataFrame | None
             ) -> tuple[pd.DataFrame, dict[str, str], dict[str, pd.DataFrame]]:
    """The sample as one pandas row per customer: split, labels, known segments (``known``:
    micro_segment, coarse_group), each variant's vector, state (its vector where the table
    has none) and segments, and the sequence
    (features, traits, trait mask); the model version of each variant built; each
    variant's segment sizes."""
    tables, cfg = ctx.tables, ctx.cfg
    seqs = tables.read("sequences")
    base = frames.sample_ids(seqs, cfg.evaluate.sample_rows, cfg.seed)
    if tables.exists("labels"):
        base = base.join(tables.read("labels").select("customer_id", "loan_default", "liquidity_class"),
                         "customer_id", "left")
    if known is not None:
        base = base.join(known, "customer_id", "left")
    built, sizes = {}, {}
    for v in variants:
        got = _variant_frames(ctx, v, as_of)
        if got is None:
            log.warning("variant %s has no segments at %s; run `microseg report` (compare stage) first", v, as_of)
            continue
        vectors, segs = got
        state = F.coalesce("state", "embedding") if "state" in vectors.columns else F.col("embedding")
        sizes[v] = (segs.groupBy("segment", "coarse_segment").count().withColumnRenamed("count", "customers")
                    .orderBy("segment").toPandas())                                    # one row per segment
        base = (base.join(vectors.select("customer_id", F.col("embedding").alias(f"vec_{v}"), state.alias(f"state_{v}")),
                          "customer_id", "left")
                .join(segs.select("customer_id", F.col("segment").alias(f"seg_{v}"),
                                  F.col("coarse_segment").alias(f"coarse_{v}")), "customer_id", "left"))
        built[v] = str(segs.select("model_version").head()[0])
    base = base.join(seqs.select("customer_id", "features", "traits", "trait_mask"), "customer_id")
    return base.orderBy("customer_id").toPandas(), built, sizes   # the sample: <= ~evaluate.sample_rows rows


def _granularity(pdf: pd.DataFrame, variants: list[str], sizes: dict[str, pd.DataFrame], window_traits: np.ndarray,
                 segment_cfg, seed: int) -> pd.DataFrame:
    rows = []
    planted = "micro_segment" in pdf and pdf["micro_segment"].notna().any()
    known = pdf["micro_segment"].notna().to_numpy() if planted else None
    for v in variants:
        labels = pdf[f"seg_{v}"].to_numpy()
        x = frames.to_matrix(pdf, f"vec_{v}")
        counts = sizes[v]["customers"]
        row = {"variant": v, "k": int(len(counts)), "k_coarse": int(sizes[v]["coarse_segment"].nunique()),
               **metrics.cluster_quality(x, labels, seed),
               "trait_var_within": metrics.within_variance_share(window_traits, labels),
               "size_min": int(counts.min()), "size_median": float(np.median(counts)), "size_max": int(counts.max()),
               **{k: val for k, val in degeneracy(sizes[v], segment_cfg, _one_point(v)).items() if k != "min_size"},
               "ari_coarse": float("nan"), "ari_micro": float("nan")}
        if planted:
            row["ari_micro"] = metrics.ari(labels[known], pdf["micro_segment"].to_numpy()[known])
            if pdf["coarse_group"].notna().any():
                coarse = known & pdf["coarse_group"].notna().to_numpy()
                row["ari_coarse"] = metrics.ari(pdf[f"coarse_{v}"].to_numpy()[coarse],
                                                pdf["coarse_group"].to_numpy()[coarse])
            row.update({f"{k}_at_planted_k": val for k, val in encoders.planted_scores(x, pdf, seed).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _one_point(variant: str) -> str | None:
    """Why the variant's latest segmentation run made one segment (too few distinct vectors), or None."""
    import mlflow

    runs = mlflow.search_runs(filter_string=f"tags.features = '{variant}'", order_by=["start_time DESC"],
                              max_results=1, output_format="list")
    return (runs[0].data.tags.get("segment.one_point") or None) if runs else None


def _k_curves(variants: list[str]) -> pd.DataFrame:
    """The coarse-level silhouette curve logged by each variant's latest segmentation run."""
    import mlflow

    rows = []
    for v in variants:
        runs = mlflow.search_runs(filter_string=f"tags.features = '{v}'", order_by=["start_time DESC"],
                                  max_results=1, output_format="list")
        if not runs:
            continue
        try:
            curve = mlflow.artifacts.load_dict(f"{runs[0].info.artifact_uri}/silhouette_by_coarse_k.json")
        except Exception:   # k was fixed in config: no curve was logged
            continue
        rows += [{"variant": v, "k": int(k), "silhouette": s} for k, s in curve.items()]
    return pd.DataFrame(rows, columns=["variant", "k", "silhouette"])


def _downstream(ctx, pdf: pd.DataFrame, variants: list[str], x: np.ndarray, active: np.ndarray,
                refs: dict[str, np.ndarray], scaling, jobs: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every feature set and the bespoke models on the same repeated stratified folds:
    (summary per model, paired differences against the bespoke GBM, tasks skipped). The
    encoders' features are their customer states (gold.embeddings' ``state``); ``jobs``
    processes share the fits."""
    cfg = ctx.cfg
    predict = downstream.tabular_predictor(cfg.seed, cfg.evaluate.gbm_iterations)
    bespoke, _ = references.bespoke_aggregates(x)
    states = {v: frames.to_matrix(pdf, f"state_{v}") for v in variants}
    lstm = states["lstm"]
    models = {LABELS[v]: (states[v], predict) for v in variants}
    models.update({name: (refs[name], predict) for name in references.NAMES})
    models[references.BESPOKE] = (bespoke, predict)
    models[LIFT] = (downstream.joined(bespoke, lstm), predict)
    linear = downstream.linear_predictor(cfg.seed)
    models[PROBE_LSTM] = (lstm, linear)
    models[PROBE_BESPOKE] = (bespoke, linear)
    models["bespoke LSTM (end-to-end)"] = (x, lstm_predictor(
        scaling, cfg.model.hidden, cfg.evaluate.e2e_epochs, cfg.seed, max_rows=cfg.evaluate.train_rows))
    if coles.available():   # the optional self-supervised peer (scripts/coles-env.sh)
        train = encoders.capped((pdf["split"] != "test").to_numpy(), cfg.evaluate.train_rows, cfg.seed)
        models["CoLES embeddings (self-supervised)"] = (
            coles.coles_embeddings(x, active.astype(np.float32), train, cfg.seed, hidden=cfg.model.hidden), predict)
    scores, skipped = downstream.cross_validate(pdf, models, cfg.evaluate.cv_folds, cfg.evaluate.cv_repeats,
                                                cfg.seed, jobs)
    return downstream.summary(scores), _paired(scores), skipped


def _paired(scores: pd.DataFrame) -> pd.DataFrame:
    """Paired differences on the same folds: every model but the bespoke probe minus the
    bespoke GBM, and the LSTM probe minus the bespoke probe (like against like)."""
    if scores.empty:
        return pd.DataFrame(columns=downstream.PAIRED)
    probes = scores["model"].isin([PROBE_LSTM, PROBE_BESPOKE])
    groups = ((scores["model"] != PROBE_BESPOKE, references.BESPOKE), (probes, PROBE_BESPOKE))
    return pd.concat([downstream.paired(scores[(scores["metric"] == m) & rows], reference, margin)
                      for rows, reference in groups
                      for m, margin in MARGIN.items() if (scores["metric"] == m).any()], ignore_index=True)


def _explain(pdf: pd.DataFrame, x: np.ndarray, active: np.ndarray, names: list[str],
             min_r2: float) -> tuple[dict, pd.DataFrame]:
    inputs, input_names = surrogate.window_inputs(x.astype(np.float64), active.astype(np.float64), names)
    return surrogate.explain(inputs, frames.to_matrix(pdf, "vec_lstm"), (pdf["split"] != "test").to_numpy(),
                             pdf["seg_lstm"].to_numpy(), input_names, min_r2)


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


def _claim(claim: str, held, evidence: str) -> dict:
    return {"claim": claim, "held": held, "evidence": evidence}


def check_claims(granularity: pd.DataFrame, objectives: pd.DataFrame, paired: pd.DataFrame,
                 configured: str, not_evaluated: dict[str, str] | None = None) -> pd.DataFrame:
    """The product's and the paper's claims as checks with the numbers behind each verdict
    (None: not checkable here, e.g. no planted truth, no labels or a variant missing). ARI
    claims compare the pipeline's LSTM vectors with the references on the same sample and
    must clear ``ARI_MARGIN``; downstream claims use the paired fold differences.
    ``not_evaluated``: "structure" (the ARI claims) or a task -> why it was not evaluated,
    given as those claims' evidence."""
    not_evaluated = not_evaluated or {}
    g = granularity.set_index("variant")
    stats = encoders.summary(objectives).set_index(["variant", "measure"]) if not objectives.empty else None

    def ari(v: str, col: str = "ari_micro_at_planted_k") -> float:
        return float(g.loc[v, col]) if v in g.index and col in g.columns else float("nan")

    def ref(name: str, measure: str = "ari_micro") -> float:
        key = (name, measure)
        return float(stats.loc[key, "mean"]) if stats is not None and key in stats.index else float("nan")

    lstm = ari("lstm")
    static, flat, hand, counted, weighted = (ref(n) for n in references.NAMES)
    rows = []
    simple = max(static, flat)
    rows.append(_claim(
        f"The LSTM's features ({configured}) recover the planted micro-segments better than static class shares "
        "and flattened monthly shares (ARI at the planted k)",
        None if np.isnan([lstm, simple]).any() else bool(lstm > simple + ARI_MARGIN),
        f"ARI micro: LSTM {lstm:.3f}, static shares {static:.3f}, flattened monthly shares {flat:.3f} "
        f"(held: above both by more than {ARI_MARGIN})"))
    rows.append(_claim(
        "The LSTM's features recover the planted micro-segments at least as well as hand-made temporal features",
        None if np.isnan([lstm, hand]).any() else bool(lstm >= hand),
        f"ARI micro: LSTM {lstm:.3f}, hand-made temporal {hand:.3f}"))
    rows.append(_claim(
        "... and at least as well as hand-made temporal features of the class count shares (the view the "
        "shape objective's target is built from)",
        None if np.isnan([lstm, counted]).any() else bool(lstm >= counted),
        f"ARI micro: LSTM {lstm:.3f}, hand-made temporal on count shares {counted:.3f}"))
    rows.append(_claim(
        "... and at least as well as those count-share features weighted by the same split-half reliability as "
        "the encoder's metric (the LSTM, not the weighting, makes the difference)",
        None if np.isnan([lstm, weighted]).any() else bool(lstm >= weighted),
        f"ARI micro: LSTM {lstm:.3f}, hand-made temporal on count shares, reliability-weighted {weighted:.3f}"))
    coarse = ari("lstm", "ari_coarse_at_planted_k")
    rows.append(_claim("The LSTM's features keep the coarse groups (ARI coarse >= 0.95 at the planted k)",
                       None if np.isnan(coarse) else bool(coarse >= 0.95), f"ARI coarse: LSTM {coarse:.3f}"))
    at_k = [ari(v) for v in ("lstm", "feedforward", "traits")]
    rows.append(_claim(
        "Paper: LSTM features separate micro-segments better than feed-forward features and raw traits",
        None if np.isnan(at_k).any() else bool(at_k[0] > max(at_k[1:]) + ARI_MARGIN),
        f"ARI micro at the planted k: LSTM {at_k[0]:.3f}, feed-forward {at_k[1]:.3f}, raw traits {at_k[2]:.3f}"))
    ff_c, ff_m = ari("feedforward", "ari_coarse_at_planted_k"), ari("feedforward")
    rows.append(_claim("Paper: feed-forward features recover only the coarse groups",
                       None if np.isnan([ff_c, ff_m, lstm]).any() else bool(ff_c >= 0.9 and ff_m < lstm),
                       f"feed-forward ARI coarse {ff_c:.3f}, micro {ff_m:.3f} (LSTM micro {lstm:.3f})"))
    if "structure" in not_evaluated:
        rows = [_claim(r["claim"], None, f"not evaluated: {not_evaluated['structure']}") for r in rows]
    if "degenerate" in g.columns and "lstm" in g.index:
        rows.append(_claim("The LSTM segmentation is not degenerate", not bool(g.loc["lstm", "degenerate"]),
                           str(g.loc["lstm", "degenerate_reason"] or
                               f"largest coarse share {g.loc['lstm', 'largest_share']:.0%}, smallest segment "
                               f"{int(g.loc['lstm', 'smallest_size'])} customers")))
    for task, metric in (("default", "roc_auc"), ("liquidity", "macro_f1")):
        claim = f"LSTM features do as well as the bespoke GBM on {task} ({metric}, paired folds)"
        r = paired[(paired["task"] == task) & (paired["metric"] == metric)
                   & (paired["reference"] == references.BESPOKE)].set_index("model")
        if task in not_evaluated:
            rows.append(_claim(claim, None, f"not evaluated: {not_evaluated[task]}"))
            continue
        if LABELS["lstm"] not in r.index:
            rows.append(_claim(claim, None, "not measured: no labels for this task, or a model missing"))
            continue
        mine = r.loc[LABELS["lstm"]]
        rows.append(_claim(claim, bool(mine["held"]),
                           f"LSTM minus bespoke: {mine['mean_diff']:+.3f} [{mine['diff_low']:+.3f}, "
                           f"{mine['diff_high']:+.3f}] over {int(mine['splits'])} folds (held: the interval includes "
                           f"0 or lies above it, and its low end is above -{mine['margin']:g})"))
        if LIFT in r.index:
            lift = r.loc[LIFT]
            rows.append(_claim(f"Adding LSTM features to the bespoke aggregates helps on {task} ({metric})",
                               bool(lift["diff_low"] > 0),
                               f"lift {lift['mean_diff']:+.3f} [{lift['diff_low']:+.3f}, {lift['diff_high']:+.3f}]"))
    for task, metric in (("default", "roc_auc"), ("liquidity", "macro_f1")):
        claim = f"With the same linear probe, LSTM features do as well as the bespoke aggregates on {task} ({metric})"
        r = paired[(paired["task"] == task) & (paired["metric"] == metric) & (paired["model"] == PROBE_LSTM)
                   & (paired["reference"] == PROBE_BESPOKE)]
        if task in not_evaluated or r.empty:
            continue   # the claims above already say why the task was not measured
        mine = r.iloc[0]
        rows.append(_claim(claim, bool(mine["held"]),
                           f"LSTM minus bespoke, both by the linear probe: {mine['mean_diff']:+.3f} "
                           f"[{mine['diff_low']:+.3f}, {mine['diff_high']:+.3f}] over {int(mine['splits'])} folds"))
    return pd.DataFrame(rows, columns=["claim", "held", "evidence"])


def _not_evaluated(truth_source: str, with_known: int, customers: int, liquidity: str | None) -> dict[str, str]:
    """What the evaluation could not judge and why: "structure" without known segments
    for any evaluated customer, "liquidity" without balances."""
    out = {}
    if truth_source == "none":
        out["structure"] = truth.NONE
    elif not with_known:
        out["structure"] = f"none of the {customers} evaluated customers has a known segment in {truth_source}"
    if liquidity:
        out["liquidity"] = liquidity
    return out


def evaluate(ctx, as_of: dt.date) -> Evaluation:
    from microseg import tracking
    from microseg.model.objectives import resolve
    from microseg.stages.context import encoder_spec, feature_scaling

    cfg, m = ctx.cfg, ctx.cfg.model
    known, truth_source = truth.known_segments(ctx)
    seconds: dict[str, float] = {}
    jobs = _jobs(cfg.evaluate)
    with _timed(seconds, "sample"):
        pdf, versions, sizes = _collect(ctx, list(cfg.evaluate.variants), as_of, known)
    built = list(versions)
    if "lstm" not in built:
        raise RuntimeError("no LSTM segments to evaluate; run the whole flow first (`make demo` or "
                           "`microseg run --stage all`)")
    needed = [f"vec_{v}" for v in built] + [f"seg_{v}" for v in built]
    complete = pdf[needed].notna().all(axis=1)
    pdf = pdf[complete].reset_index(drop=True)
    log.info("evaluation sample: %d customers (%d without every variant left out)", len(pdf), int((~complete).sum()))
    names = feature_names(ctx.taxonomy.spend_classes)
    months = cfg.sequences.window_months
    x = frames.to_matrix(pdf, "features").reshape(len(pdf), months, len(names)).astype(np.float32)
    traits = frames.to_matrix(pdf, "traits").reshape(len(pdf), months, len(TRAITS)).astype(np.float32)
    trait_mask = frames.to_matrix(pdf, "trait_mask").astype(np.float32)
    active = (x != 0).any(-1)                     # months with any transaction, as the encoders see them
    window_traits = (traits * trait_mask[..., None]).sum(1) / np.maximum(trait_mask.sum(1), 1)[:, None]
    scaling = feature_scaling(ctx, ctx.tables.version("sequences"))
    with _timed(seconds, "granularity"):
        granularity = _granularity(pdf, built, sizes, window_traits, cfg.segment, cfg.seed)
    seeds = [cfg.seed + i for i in range(cfg.evaluate.objective_seeds)]
    with _timed(seconds, "objectives"):
        objectives, vectors = encoders.compare(
            pdf, x, traits, trait_mask, scaling, encoder_spec(m, len(names), months, kind="lstm"),
            list(cfg.evaluate.objectives), cfg.evaluate.objective_epochs, m.batch_size, m.learning_rate, seeds,
            cfg.evaluate.train_rows, m.lr_step_epochs, m.lr_gamma, jobs)
    with _timed(seconds, "downstream"):
        summary, paired, skipped = _downstream(ctx, pdf, built, x, active, vectors, scaling, jobs)
    dataset = "generated" if ctx.tables.exists("ground_truth") else cfg.source.adapter
    with _timed(seconds, "surrogate"):
        fidelity, drivers = _explain(pdf, x, active, names, cfg.evaluate.min_surrogate_r2)
    with _timed(seconds, "map"):
        map_points = _map(pdf, built, cfg.evaluate.map_rows, cfg.seed)
    with_known = int(pdf["micro_segment"].notna().sum()) if "micro_segment" in pdf else 0
    balances = balance_coverage(ctx.tables.read("monthly_account"))
    not_evaluated = _not_evaluated(truth_source, with_known, len(pdf), liquidity_unavailable(*balances))
    profiles, mix = _profiles(ctx, as_of)
    configured = " + ".join(f"{w:g} {p}" for p, w in resolve(m.objective).items())
    meta = {"as_of": str(as_of), "dataset": dataset, "customers_in_sample": int(len(pdf)),
            "left_out_incomplete": int((~complete).sum()), "variants": built,
            "objective_configured": configured, "model_versions": versions,
            "cv": f"{cfg.evaluate.cv_folds}-fold stratified x {cfg.evaluate.cv_repeats} repeats",
            "downstream_skipped": skipped[~skipped["task"].isin(list(not_evaluated))].to_dict(orient="records"),
            "ground_truth": truth_source, "customers_with_known_segment": with_known,
            "customers_without_balances": balances[1], "not_evaluated": not_evaluated,
            "table_versions": ctx.tables.versions(["sequences", "feature_stats", "labels", "segments", "embeddings"]),
            "code_version": tracking.code_version(), "seed": cfg.seed, "jobs": jobs,
            "seconds": seconds,
            "coles": "included" if coles.available() else "not installed (optional extra: scripts/coles-env.sh)"}
    return Evaluation(granularity=granularity, k_curves=_k_curves(built), objectives=objectives,
                      downstream=summary.assign(dataset=dataset), paired=paired, surrogate=fidelity, drivers=drivers,
                      map_points=map_points,
                      profiles=profiles, spend_mix=mix,
                      claims=check_claims(granularity, objectives, paired, configured, not_evaluated), meta=meta)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def flat_metrics(ev: Evaluation) -> dict[str, float]:
    """The headline numbers as MLflow metrics: ``<variant>.<measure>``,
    ``objective.<name>.<measure>`` (mean over seeds), ``<dataset>.<task>.<model>.<metric>``
    (mean over folds) and ``seconds.<phase>``; NaN and text left out."""
    out = {}
    for row in ev.granularity.to_dict(orient="records"):
        out.update({f"{row['variant']}.{k}": float(v) for k, v in row.items()
                    if k != "variant" and isinstance(v, (int, float, bool, np.number)) and v is not None})
    for row in encoders.summary(ev.objectives).to_dict(orient="records") if not ev.objectives.empty else []:
        out[f"objective.{_slug(row['variant'])}.{row['measure']}"] = float(row["mean"])
    for row in ev.downstream.to_dict(orient="records"):
        out[f"{row['dataset']}.{row['task']}.{_slug(row['model'])}.{row['metric']}"] = float(row["mean"])
    for row in ev.paired.to_dict(orient="records"):
        out[f"paired.{row['task']}.{_slug(row['model'])}.{row['metric']}.mean_diff"] = float(row["mean_diff"])
    out["surrogate.r2"] = float(ev.surrogate["r2"])
    out.update({f"seconds.{phase}": float(v) for phase, v in ev.meta.get("seconds", {}).items()})
    return {k: v for k, v in out.items() if not np.isnan(v)}


def save(ev: Evaluation, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ev.to_json())


def load(path: Path) -> Evaluation:
    return Evaluation.from_dict(json.loads(path.read_text()))
