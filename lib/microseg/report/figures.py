"""The report's figures: each function takes Evaluation frames and returns a Figure.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot, so no global state)
and saved with the Agg renderer. An empty input, or one whose needed columns are all
missing or NaN, gives a figure that says so instead of raising.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from microseg.evaluate.result import Evaluation
from microseg.taxonomy import TRAITS

TOP_CLASSES = 8
TOP_FEATURES = 5
OTHER_CLASSES = "all other classes"


def population_traits(profiles: pd.DataFrame) -> pd.Series:
    """The customer-weighted average of the segments' mean trait scores."""
    traits = [t for t in TRAITS if t in profiles.columns]
    weights = profiles["customers"].astype(float)
    return profiles[traits].astype(float).mul(weights, axis=0).sum() / weights.sum()


def _usable(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows with every one of ``columns`` present; none when a column is missing."""
    if not set(columns) <= set(frame.columns):
        return pd.DataFrame(columns=columns)
    return frame.dropna(subset=columns)


def _plain(text) -> str:
    """A data label as literal text (a '$' would otherwise start matplotlib mathtext)."""
    return str(text).replace("$", r"\$")


def _segment_label(row: pd.Series) -> str:
    coarse = row.get("coarse_segment")
    return f"{int(row['segment'])}" + (f" (c{int(coarse)})" if pd.notna(coarse) else "")


def _no_data(title: str, why: str = "no data") -> Figure:
    fig = Figure(figsize=(6, 1.6))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.4, why, ha="center", va="center", color="grey", transform=ax.transAxes)
    return fig


def _grid(n: int, ncols: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure with ``n`` panels, at most ``ncols`` a row; the spare panels hidden."""
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, list(axes[:n])


def segment_map(points: pd.DataFrame) -> Figure:
    """The 2-D map of a customer sample, one panel per variant, coloured by segment."""
    title = "Customers on a 2-D map (t-SNE of a sample), coloured by segment"
    points = _usable(points, ["x", "y", "segment", "variant"])
    if points.empty:
        return _no_data(title)
    variants = list(dict.fromkeys(points["variant"]))
    fig, axes = _grid(len(variants), 3, 4.6, 4.2)
    for ax, variant in zip(axes, variants):
        sub = points[points["variant"] == variant]
        codes, segments = pd.factorize(sub["segment"].astype(int), sort=True)
        n = len(segments)
        cmap = colormaps["tab20" if n <= 20 else "turbo"].resampled(n)
        dots = ax.scatter(sub["x"], sub["y"], c=codes, cmap=cmap, vmin=-0.5, vmax=n - 0.5,
                          s=5, alpha=0.8, linewidths=0)
        ticks = list(range(0, n, math.ceil(n / 20)))
        bar = fig.colorbar(dots, ax=ax, ticks=ticks, shrink=0.85)
        bar.ax.set_yticklabels([str(segments[t]) for t in ticks], fontsize=7)
        bar.set_label("segment")
        ax.set_title(f"{_plain(variant)}: {n} segments", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return fig


def trait_profiles(profiles: pd.DataFrame) -> Figure:
    """Segments x traits: mean scores annotated, coloured by the gap to the average."""
    title = "Trait profile per segment (colour: difference from the customer-weighted average)"
    traits = [t for t in TRAITS if t in profiles.columns]
    profiles = _usable(profiles, ["segment", "customers", *traits])
    if profiles.empty or not traits:
        return _no_data(title)
    profiles = profiles.sort_values("segment")
    values = profiles[traits].to_numpy(float)
    gaps = values - population_traits(profiles).to_numpy()
    span = max(float(np.abs(gaps).max()), 1e-9)
    fig = Figure(figsize=(1.3 * len(traits) + 3, 0.32 * len(profiles) + 2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(gaps, cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        ink = "white" if abs(gaps[i, j]) > 0.6 * span else "black"
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=ink)
    ax.set_xticks(range(len(traits)), traits, rotation=25, ha="right")
    ax.set_yticks(range(len(profiles)), [_segment_label(r) for _, r in profiles.iterrows()], fontsize=8)
    ax.set_ylabel("segment (coarse)")
    fig.colorbar(image, ax=ax, label="difference from average")
    ax.set_title(title, fontsize=10)
    return fig


def spend_mix(mix: pd.DataFrame) -> Figure:
    """Stacked bars of each segment's spend share: the largest classes, the rest grouped."""
    title = "Spend mix per segment"
    mix = _usable(mix, ["segment", "txn_class", "share"])
    if mix.empty:
        return _no_data(title)
    table = mix.pivot_table(index="segment", columns="txn_class", values="share",
                            aggfunc="sum", fill_value=0.0).sort_index()
    top = table.mean().nlargest(TOP_CLASSES).index
    shown = table[top].copy()
    rest = table.drop(columns=top).sum(axis=1)
    if (rest > 0).any():
        shown[OTHER_CLASSES] = rest
    colours = [colormaps["tab10"](i) for i in range(len(top))] + ["lightgrey"]
    fig = Figure(figsize=(9, 0.3 * len(shown) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(shown))
    left = np.zeros(len(shown))
    for column, colour in zip(shown.columns, colours):
        ax.barh(y, shown[column], left=left, color=colour, label=_plain(column))
        left += shown[column].to_numpy()
    ax.set_yticks(y, [str(int(s)) for s in shown.index], fontsize=8)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_ylabel("segment")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of the segment's spend")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title)
    return fig


def segment_sizes(profiles: pd.DataFrame) -> Figure:
    """Customers per segment, bars coloured by coarse segment."""
    title = "Segment sizes"
    profiles = _usable(profiles, ["segment", "customers"]).sort_values("segment")
    if profiles.empty:
        return _no_data(title)
    coarse = profiles.get("coarse_segment", pd.Series(np.nan, index=profiles.index))
    groups = sorted(coarse.dropna().unique())
    palette = {g: colormaps["tab10"](i % 10) for i, g in enumerate(groups)}
    fig = Figure(figsize=(max(6.0, 0.25 * len(profiles) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(profiles))
    ax.bar(x, profiles["customers"], color=[palette.get(c, "grey") for c in coarse])
    ax.set_xticks(x, [str(int(s)) for s in profiles["segment"]], fontsize=7,
                  rotation=90 if len(profiles) > 30 else 0)
    ax.set_xlabel("segment")
    ax.set_ylabel("customers")
    if groups:
        ax.legend(handles=[Patch(color=palette[g], label=f"coarse {int(g)}") for g in groups], fontsize=8)
    ax.set_title(title)
    return fig


def k_curves(curves: pd.DataFrame, granularity: pd.DataFrame) -> Figure:
    """Silhouette against k, one line per variant, the chosen k ringed."""
    title = "Choosing k: silhouette per number of segments"
    curves = _usable(curves, ["variant", "k", "silhouette"])
    if curves.empty:
        return _no_data(title)
    chosen = _usable(granularity, ["variant", "k"]).set_index("variant")["k"]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for variant, sub in curves.groupby("variant", sort=False):
        sub = sub.sort_values("k")
        (line,) = ax.plot(sub["k"], sub["silhouette"], marker=".", label=_plain(variant))
        at = sub[sub["k"] == chosen.get(variant)]
        if not at.empty:
            ax.plot(at["k"], at["silhouette"], "o", ms=11, mfc="none", mec=line.get_color(), mew=2)
            ax.annotate(f"k={int(at['k'].iloc[0])}", (at["k"].iloc[0], at["silhouette"].iloc[0]),
                        textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k (number of segments)")
    ax.set_ylabel("silhouette")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def downstream(results: pd.DataFrame) -> Figure:
    """Mean over the cross-validation folds with +- one sd, one panel per (dataset, task, metric)."""
    title = "Downstream tasks (repeated stratified k-fold: mean ± sd)"
    results = _usable(results, ["dataset", "task", "metric", "model", "mean"])
    if results.empty:
        return _no_data(title, "no downstream results (no labels in this run)")
    groups = list(results.groupby(["dataset", "task", "metric"], sort=False))
    rows = max(len(sub) for _, sub in groups)
    fig, axes = _grid(len(groups), 2, 5.5, 0.4 * rows + 1.3)
    for ax, ((dataset, task, metric), sub) in zip(axes, groups):
        y = np.arange(len(sub))
        ax.errorbar(sub["mean"], y, xerr=sub["sd"].fillna(0), fmt="o", capsize=3)
        ax.set_yticks(y, [_plain(m) for m in sub["model"]], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(_plain(metric))
        ax.set_title(_plain(f"{dataset} · {task} · {metric}"), fontsize=10)
    fig.suptitle(title)
    return fig


def surrogate_drivers(drivers: pd.DataFrame, surrogate: dict) -> Figure:
    """Small multiples: the inputs that drive each segment most, by the linear surrogate."""
    r2 = surrogate.get("r2")
    title = "Inputs that drive each segment" + (f" (linear surrogate, R² = {r2:.2f})" if r2 is not None else "")
    drivers = _usable(drivers, ["segment", "rank", "feature", "score"])
    if drivers.empty:
        return _no_data(title)
    top = drivers.sort_values(["segment", "rank"]).groupby("segment").head(TOP_FEATURES)
    segments = sorted(top["segment"].unique())
    fig, axes = _grid(len(segments), 4, 3.8, 0.3 * TOP_FEATURES + 1.0)
    for ax, segment in zip(axes, segments):
        sub = top[top["segment"] == segment]
        y = np.arange(len(sub))
        ax.barh(y, sub["score"], color=["tab:red" if s < 0 else "tab:blue" for s in sub["score"]])
        ax.axvline(0, color="black", lw=0.5)
        ax.set_yticks(y, [_plain(f) for f in sub["feature"]], fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"segment {int(segment)}", fontsize=9)
    fig.suptitle(title)
    return fig


def all_figures(ev: Evaluation) -> dict[str, Figure]:
    """Every figure of the report, by name."""
    return {
        "k_curves": k_curves(ev.k_curves, ev.granularity),
        "segment_map": segment_map(ev.map_points),
        "trait_profiles": trait_profiles(ev.profiles),
        "spend_mix": spend_mix(ev.spend_mix),
        "segment_sizes": segment_sizes(ev.profiles),
        "downstream": downstream(ev.downstream),
        "surrogate_drivers": surrogate_drivers(ev.drivers, ev.surrogate),
    }
