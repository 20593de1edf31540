"""One self-contained HTML page per run: what each segment is, the paper's claims checked
with numbers, and every figure embedded as a PNG (inline CSS, no external assets, no JS).

``write_report`` writes the page, each figure as a PNG and the metrics as JSON, and returns
the paths so the caller can log them to MLflow and link them from the run's summary.
"""

from __future__ import annotations

import base64
import io
import math
import numbers
from html import escape
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from microseg.evaluate import encoders
from microseg.evaluate.result import Evaluation
from microseg.report.figures import all_figures, population_traits

MIN_TRAIT_GAP = 0.005  # smaller trait gaps round to +0.00 and are not mentioned
MIN_SHARE_GAP = 0.005  # spend classes over-represented by less than half a point are not mentioned
DPI = 110

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto;
       max-width: 1150px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
p.note { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; } img { max-width: 100%; height: auto; }
"""

# section title, the note under it
SECTIONS = (
    ("What the segments are",
     "Micro-segments of the LSTM features, each described from its data: the traits furthest from "
     "the customer-weighted average, the spend classes over-represented against the overall mix, "
     "and the outcomes where labels exist."),
    ("Claims checked", "The product's and the paper's claims, checked on this run's numbers; a claim "
     "is held only when the numbers clear the margin stated beside it."),
    ("Granularity across variants",
     "One row per feature variant as the pipeline segmented it (coarse segments by silhouette, "
     "micro-segments inside each by segment.micro_k_criterion: the lowest BIC by default). Silhouette: higher is better separated; Davies-Bouldin: lower is "
     "better; trait var within: share of trait variance left within segments; degenerate: a segment "
     "over the max share of customers or under the minimum size, whatever its silhouette. ARI: "
     "adjusted Rand index against the known segments (the generator's planted ones, or your own "
     "through evaluate.known_segments), for the pipeline's segments and for KMeans at the known k "
     "(micro, coarse, and two levels), over the customers with a known segment. The curve shows "
     "the coarse level's silhouette for each k tried; the ring marks the chosen k."),
    ("Encoder objectives against the simple references",
     "Every objective trained alike on the sample's training split (the configured encoder's size, "
     "epochs and optimiser), once per seed: mean over the seeds [lowest, highest]; the references "
     "are computed from the same sequences and need no training: static class shares, flattened "
     "monthly class shares, hand-made temporal features of the class shares and of the count shares, "
     "and the latter weighted by the split-half reliability the encoder's metric uses (so the metric's "
     "gain is not credited to the LSTM); their KMeans runs once per seed too, "
     "so their range is the clustering's own noise. ARI at the known k (with known segments only). "
     "Held-out loss is each objective's own (1 - R²) and not comparable across rows."),
    ("Segment map",
     "A t-SNE map of a customer sample per variant, one colour per segment: separate, compact "
     "islands are distinct segments."),
    ("Trait profiles",
     "Mean trait score per segment (the number in each cell); red is above the customer-weighted "
     "average, blue below."),
    ("Spend mix", "Share of each segment's spend per transaction class: the largest classes, the rest grouped."),
    ("Segment sizes", "Customers per segment, coloured by coarse segment."),
    ("Downstream tasks",
     "Every feature set and the bespoke models on the same repeated stratified folds over all "
     "labelled customers (mean and sd over the folds); below, each minus the bespoke GBM on the "
     "same folds with a corrected resampled t interval (Nadeau & Bengio). 'As good as bespoke' "
     "holds only when the interval includes 0 or lies above it and its low end clears the margin."),
    ("What drives each segment",
     "A linear surrogate mimics the LSTM from its inputs; its fidelity R² says how far to trust it, "
     "and below evaluate.min_surrogate_r2 no drivers are named. The inputs with the largest scores "
     "drive each segment most; the sign gives the direction."),
)
FIGURE_SECTION = {
    "k_curves": "Granularity across variants",
    "segment_map": "Segment map",
    "trait_profiles": "Trait profiles",
    "spend_mix": "Spend mix",
    "segment_sizes": "Segment sizes",
    "downstream": "Downstream tasks",
    "surrogate_drivers": "What drives each segment",
}
MORE_FIGURES = "More figures"


# ---- the segment descriptions ---------------------------------------------------------

def _trait_clause(row: pd.Series, average: pd.Series) -> str:
    gaps = (row[average.index].astype(float) - average).dropna()
    gaps = gaps[gaps.abs() >= MIN_TRAIT_GAP]
    if gaps.empty:
        return "traits close to the average"
    top = gaps.abs().nlargest(2).index
    return ", ".join(f"{'high' if gaps[t] > 0 else 'low'} {t} ({gaps[t]:+.2f} vs average)" for t in top)


def _spend_clause(shares: pd.Series, overall: pd.Series) -> str:
    gaps = (shares - overall).dropna()
    top = gaps[gaps >= MIN_SHARE_GAP].nlargest(2).index
    if top.empty:
        return ""
    return "spends more than average on " + ", ".join(
        f"{c} ({shares[c]:.1%} vs {overall[c]:.1%} overall)" for c in top)


def _outcome_clause(row: pd.Series) -> str:
    parts = []
    if pd.notna(row.get("default_rate")):
        parts.append(f"default rate {row['default_rate']:.1%}")
    if pd.notna(row.get("liquidity_index")):
        parts.append(f"liquidity {row['liquidity_index']:.1f} months")
    return ", ".join(parts)


def _shares(profiles: pd.DataFrame, spend_mix: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Segment x class spend shares, and the overall share (customer-weighted over segments)."""
    if spend_mix.empty:
        return pd.DataFrame(), pd.Series(dtype=float)
    table = spend_mix.pivot_table(index="segment", columns="txn_class", values="share",
                                  aggfunc="sum", fill_value=0.0)
    weights = profiles.set_index("segment")["customers"].reindex(table.index).fillna(0)
    return table, table.mul(weights, axis=0).sum() / weights.sum()


def segment_descriptions(profiles: pd.DataFrame, spend_mix: pd.DataFrame) -> dict[int, str]:
    """One plain-language sentence per segment, from its size, traits, spend and outcomes."""
    if profiles.empty:
        return {}
    total = profiles["customers"].sum()
    average = population_traits(profiles)
    table, overall = _shares(profiles, spend_mix)
    out = {}
    for _, row in profiles.sort_values("segment").iterrows():
        segment = int(row["segment"])
        head = f"{int(row['customers']):,} customers ({row['customers'] / total:.1%})"
        if pd.notna(row.get("coarse_segment")):
            head += f", coarse group {int(row['coarse_segment'])}"
        spend = _spend_clause(table.loc[segment], overall) if segment in table.index else ""
        clauses = [c for c in (_trait_clause(row, average), spend, _outcome_clause(row)) if c]
        out[segment] = f"{head}: {'; '.join(clauses)}."
    return out


# ---- HTML pieces ----------------------------------------------------------------------

def _fmt(value) -> str:
    """A cell value as text: NaN as a dash, whole numbers without decimals, 3 significant digits."""
    if value is None or value is pd.NA or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "–"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if float(value).is_integer():
            return f"{int(value):,}"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _table(frame: pd.DataFrame) -> str:
    """An HTML table of a frame, every header and cell escaped; numbers right-aligned."""
    if frame.empty:
        return '<p class="note">No rows.</p>'
    head = "".join(f"<th>{escape(str(c).replace('_', ' '))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = "".join(
            f'<td{" class=num" if isinstance(v, numbers.Number) else ""}>{escape(_fmt(v))}</td>'
            for v in values)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _image(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    label = escape(name.replace("_", " "))
    return f'<figure><img src="data:image/png;base64,{data}" alt="{label}"></figure>'


def _meta_value(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return _fmt(value)


def _header(meta: dict) -> str:
    subtitle = " · ".join(str(meta[k]) for k in ("dataset", "as_of") if meta.get(k) is not None)
    rows = "".join(f"<tr><th>{escape(str(k).replace('_', ' '))}</th><td>{escape(_meta_value(v))}</td></tr>"
                   for k, v in meta.items())
    return (f"<h1>Micro-segments report</h1><p class=note>{escape(subtitle)}</p>"
            f"<table>{rows}</table>")


# ---- the sections' contents -----------------------------------------------------------

def _segments(profiles: pd.DataFrame, descriptions: dict[int, str]) -> str:
    if profiles.empty:
        return _table(profiles)
    rows = profiles.sort_values("segment")
    return _table(pd.DataFrame({
        "segment": rows["segment"].astype(int).to_numpy(),
        "coarse": rows.get("coarse_segment", pd.Series(None, index=rows.index)).to_numpy(),
        "customers": rows["customers"].to_numpy(),
        "description": [descriptions[int(s)] for s in rows["segment"]],
    }))


def _verdict(held) -> str:
    if held is None or held is pd.NA or (isinstance(held, float) and math.isnan(held)):
        return "n/a"
    return "✓ held" if held else "✗ did not hold"


def _claims(claims: pd.DataFrame) -> str:
    if claims.empty:
        return _table(claims)
    return _table(claims[["claim"]].assign(held=claims["held"].map(_verdict), evidence=claims["evidence"]))


def _not_evaluated(what: str, reason: str | None) -> str:
    """A bold note that ``what`` was not evaluated and why; nothing without a reason."""
    return f'<p class="note"><strong>{escape(what)} not evaluated: {escape(reason)}.</strong></p>' if reason else ""


def _downstream(summary: pd.DataFrame, paired: pd.DataFrame, skipped: list, not_evaluated: dict) -> str:
    """The scores and paired differences; a task the run could not evaluate (no balances)
    says why instead of its skip reason."""
    notes = "".join(_not_evaluated(task, not_evaluated.get(task)) for task in ("default", "liquidity"))
    notes += "".join(f'<p class="note">{escape(r["task"])} not scored: {escape(r["reason"])}.</p>'
                     for r in skipped or [] if r["task"] not in not_evaluated)
    if summary.empty:
        return notes or '<p class="note">No downstream results: this run has no labels.</p>'
    table = _table(summary[["task", "model", "metric"]].assign(
        **{"mean ± sd": [f"{_fmt(m)} ± {_fmt(s)}" for m, s in zip(summary["mean"], summary["sd"])],
           "folds": summary["splits"], "labelled": summary["n_labelled"], "positives": summary["n_positive"]}))
    if paired.empty:
        return notes + table
    diffs = _table(paired[["task", "model", "reference", "metric"]].assign(
        **{"minus reference [95% CI]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                                          zip(paired["mean_diff"], paired["diff_low"], paired["diff_high"])],
           "as good (margin)": [f"{_verdict(h)} ({m:g})" for h, m in zip(paired["held"], paired["margin"])]}))
    return notes + table + diffs


def _objectives(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="note">Not compared in this run.</p>'
    stats = encoders.summary(frame)
    cell = [f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]" if n > 1 else _fmt(m)
            for m, lo, hi, n in zip(stats["mean"], stats["min"], stats["max"], stats["count"])]
    wide = (stats[["variant", "kind", "measure"]].assign(value=cell)
            .pivot(index=["variant", "kind"], columns="measure", values="value"))
    order = [c for c in ("ari_micro", "ari_two_level", "ari_coarse", "held_out_loss", "dims") if c in wide.columns]
    return _table(wide[order].reset_index().sort_values("kind", ascending=False, kind="stable"))


def _explanation(surrogate: dict, drivers: pd.DataFrame) -> str:
    facts = [f"Surrogate fidelity R² = {_fmt(surrogate.get('r2'))}"]
    per_dim = surrogate.get("r2_per_dim") or []
    if per_dim:
        facts.append(f"R² per output dimension from {min(per_dim):.2f} to {max(per_dim):.2f} "
                     f"({len(per_dim)} dimensions)")
    if "rows" in surrogate and "inputs" in surrogate:
        facts.append(f"fitted on {_fmt(surrogate['rows'])} rows of {_fmt(surrogate['inputs'])} inputs")
    text = f"<p>{escape('; '.join(facts))}.</p>"
    if surrogate.get("unexplained"):
        return text + f"<p><strong>{escape(surrogate['unexplained'])}.</strong></p>"
    if drivers.empty:
        return text + _table(drivers)
    top = drivers.sort_values(["segment", "rank"]).groupby("segment")
    listing = pd.DataFrame({
        "segment": [int(s) for s, _ in top],
        "top inputs (score)": [", ".join(f"{f} ({s:+.2f})" for f, s in zip(g["feature"], g["score"]))
                               for _, g in top],
    })
    return text + _table(listing)


# ---- the page ---------------------------------------------------------------------------

def _page(ev: Evaluation, pngs: dict[str, bytes]) -> str:
    missing = ev.meta.get("not_evaluated") or {}
    structure = _not_evaluated("Structure claims (ARI against known segments)", missing.get("structure"))
    contents = {
        "What the segments are": _segments(ev.profiles, segment_descriptions(ev.profiles, ev.spend_mix)),
        "Claims checked": structure + _claims(ev.claims),
        "Granularity across variants": structure + _table(ev.granularity),
        "Encoder objectives against the simple references": _objectives(ev.objectives),
        "Downstream tasks": _downstream(ev.downstream, ev.paired, ev.meta.get("downstream_skipped"), missing),
        "What drives each segment": _explanation(ev.surrogate, ev.drivers),
    }
    sections = list(SECTIONS)
    if any(name not in FIGURE_SECTION for name in pngs):
        sections.append((MORE_FIGURES, ""))
    body = []
    for title, note in sections:
        images = "".join(_image(n, png) for n, png in pngs.items()
                         if FIGURE_SECTION.get(n, MORE_FIGURES) == title)
        note_html = f'<p class="note">{escape(note)}</p>' if note else ""
        body.append(f"<section><h2>{escape(title)}</h2>{note_html}{contents.get(title, '')}{images}</section>")
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>Micro-segments report</title><style>{CSS}</style></head>"
            f"<body>{_header(ev.meta)}{''.join(body)}</body></html>")


def render(ev: Evaluation, figures: dict[str, Figure]) -> str:
    """The report as one self-contained HTML page, every figure embedded as a PNG."""
    return _page(ev, {name: _png(fig) for name, fig in figures.items()})


def write_report(ev: Evaluation, out_dir: Path) -> dict[str, Path]:
    """Write report.html, figures/<name>.png and metrics.json under ``out_dir``; returns the
    paths by their name relative to ``out_dir``."""
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    pngs = {name: _png(fig) for name, fig in all_figures(ev).items()}
    paths = {f"figures/{name}.png": out_dir / "figures" / f"{name}.png" for name in pngs}
    for name, png in pngs.items():
        paths[f"figures/{name}.png"].write_bytes(png)
    paths["report.html"] = out_dir / "report.html"
    paths["report.html"].write_text(_page(ev, pngs), encoding="utf-8")
    paths["metrics.json"] = out_dir / "metrics.json"
    paths["metrics.json"].write_text(ev.to_json(), encoding="utf-8")
    return paths
