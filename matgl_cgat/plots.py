"""PNG figures for training runs, scaling studies, parity checks and budget plans.

matplotlib is imported lazily, inside each function, so the package does not need it unless a plot
is drawn; the non-interactive Agg backend is forced so plotting works on headless training nodes.
Every PNG is written to a temporary file next to its destination and then renamed into place, so
a crash or a concurrent reader never sees a half-written image.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from matgl_cgat._io import atomic_path

__all__ = ["plot_budget", "plot_parity", "plot_scaling", "plot_training_curve"]


def _pyplot():
    """pyplot on the Agg backend: no display is needed and no window ever opens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: str | Path) -> Path:
    """Write ``fig`` atomically to ``out_png`` (temporary file in the same folder, then ``os.replace``) and close it."""
    plt = _pyplot()
    out = Path(out_png)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def _number(text) -> float | None:
    """A CSV cell as a float, ``None`` when empty (validation-only columns are blank on training rows)."""
    if text is None or str(text).strip() == "":
        return None
    return float(text)


def plot_training_curve(metrics_csv: str | Path, out_png: str | Path, title: str | None = None) -> Path:
    """Train and validation MAE against epoch, with the learning rate on a second axis.

    The learning rate shares the figure so the cyclic (triangular) schedule can be read against the
    error curve. Blank cells are skipped per column: rows without validation values (or a CSV
    without an ``lr`` column) still plot.
    """
    path = Path(metrics_csv)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in ("epoch", "train_mae") if c not in fields]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; found {fields}")
    if not rows:
        raise ValueError(f"{path} has a header but no rows to plot")

    def series(col: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for i, row in enumerate(rows):
            try:
                x, y = _number(row.get("epoch")), _number(row.get(col))
            except ValueError as exc:
                raise ValueError(f"{path}, data row {i + 1}: column {col!r} is not a number ({exc})") from None
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
        return xs, ys

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    handles = []
    for col, label, color in (("train_mae", "train MAE", "tab:blue"), ("val_mae", "val MAE", "tab:orange")):
        xs, ys = series(col)
        if xs:
            handles += ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, color=color, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MAE")
    ax.grid(alpha=0.3)
    xs, lrs = series("lr")
    if xs:
        ax_lr = ax.twinx()
        handles += ax_lr.plot(xs, lrs, color="tab:gray", ls="--", lw=1, label="learning rate")
        ax_lr.set_ylabel("learning rate")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if handles:
        ax.legend(handles=handles, labels=[h.get_label() for h in handles], loc="upper right")
    ax.set_title(title if title is not None else path.stem)
    return _save(fig, out_png)


def plot_scaling(rows, out_png: str | Path, fits: dict | None = None, title: str | None = None,
                 ylabel: str = "test MAE") -> Path:
    """Error against training-set size on log-log axes, one series per strategy.

    Each point is the mean over the seeds of a size with the seeds' standard deviation as error bar
    (sample std; 0 for a single seed). With ``fits`` (strategy -> object with ``a`` and ``b``), the power
    law MAE = a * N**(-b) is drawn across the plotted size range, its exponent in the legend.
    """
    if not rows:
        raise ValueError("plot_scaling needs at least one row")
    groups: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        size, mae = float(row["size"]), float(row["test_mae"])
        if not (size > 0 and mae > 0 and math.isfinite(size) and math.isfinite(mae)):
            raise ValueError(f"log-log axes need positive, finite size and test_mae; got {row}")
        groups.setdefault(str(row["strategy"]), {}).setdefault(size, []).append(mae)
    all_sizes = [s for by_size in groups.values() for s in by_size]
    grid = np.geomspace(min(all_sizes), max(all_sizes), 100)

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (strategy, by_size) in enumerate(groups.items()):
        color = colors[i % len(colors)]
        sizes = sorted(by_size)
        means = [float(np.mean(by_size[s])) for s in sizes]
        stds = [float(np.std(by_size[s], ddof=1)) if len(by_size[s]) > 1 else 0.0 for s in sizes]
        ax.errorbar(sizes, means, yerr=stds, fmt="o", color=color, capsize=3, ms=5, label=strategy)
        fit = (fits or {}).get(strategy)
        if fit is not None:
            ax.plot(grid, fit.a * grid ** (-fit.b), color=color, lw=1.2, label=f"{strategy}: b={fit.b:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training-set size N")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, out_png)


def plot_parity(y_true, y_pred, out_png: str | Path, title: str | None = None, units: str = "") -> Path:
    """Predicted against true values with the y = x line and the MAE; equal limits keep the diagonal at 45°."""
    from matgl_cgat.metrics import regression_metrics

    stats = regression_metrics(y_true, y_pred)  # also validates the inputs
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    lo, hi = lo - pad, hi + pad
    unit = f" ({units})" if units else ""

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(t, p, s=6, alpha=0.3 if t.size > 200 else 0.6, edgecolors="none")
    ax.plot([lo, hi], [lo, hi], color="k", lw=1, ls="--")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"true{unit}")
    ax.set_ylabel(f"predicted{unit}")
    ax.text(0.04, 0.96, f"MAE = {stats['mae']:.3g}{' ' + units if units else ''}\nn = {stats['n']}",
            transform=ax.transAxes, va="top", bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
    if title:
        ax.set_title(title)
    return _save(fig, out_png)


def plot_budget(plan_rows, out_png: str | Path, title: str | None = None) -> Path:
    """Predicted error of spending an extra budget on cheap versus expensive calculations.

    The x axis is logarithmic when every budget is positive, since budgets usually span decades.
    """
    if not plan_rows:
        raise ValueError("plot_budget needs at least one row")
    rows = sorted(plan_rows, key=lambda r: float(r["budget"]))
    budget = [float(r["budget"]) for r in rows]

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(budget, [float(r["mae_cheap"]) for r in rows], marker="o", ms=4, label="cheap calculations")
    ax.plot(budget, [float(r["mae_expensive"]) for r in rows], marker="s", ms=4, label="expensive calculations")
    if all(b > 0 for b in budget):
        ax.set_xscale("log")
    ax.set_xlabel("extra budget (cheap-calculation units)")
    ax.set_ylabel("predicted MAE")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, out_png)


def plot_calibration(calibrations: dict, out_png: str | Path, title: str | None = None) -> Path:
    """Observed fraction of errors inside the central (Laplace) interval against its nominal level,
    one line per model (``{label: Calibration}``); the diagonal is perfect calibration, above it sigma
    is too large, below it too small."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="k", lw=1, ls="--")
    for label, c in calibrations.items():
        ax.plot(c.levels, c.observed, marker="o", ms=3,
                label=f"{label}: {c.coverage_68:.0%} in 68%, {c.coverage_95:.0%} in 95% interval (n={c.n})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal level of the central interval")
    ax.set_ylabel("fraction of test errors inside")
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title)
    return _save(fig, out_png)
