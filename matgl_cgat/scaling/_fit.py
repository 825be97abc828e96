"""Power-law fits of error against training-set size: MAE = a * N**(-b), a straight line on log-log axes.

Hoffmann et al. read data budgets off such lines: how many structures a strategy needs to reach an
error, and how many more "no transfer" needs to match "transfer" (the data-equivalent size). The
uncertainty of ``a`` and ``b`` comes from a bootstrap over seeds: at every size one of that size's
runs is drawn with replacement, the per-size means are re-fitted, and the spread of the refits is
reported. With a single run per size the bootstrap resamples whole (size, MAE) points instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PowerLawFit:
    """A fitted power law with bootstrap samples of its parameters."""

    a: float
    b: float
    a_err: float
    b_err: float
    sizes: list[float]
    maes: list[float]
    r2_log: float
    samples: np.ndarray = field(repr=False)  # (n_boot, 2) rows of (a, b)

    @classmethod
    def from_params(cls, a: float, b: float) -> PowerLawFit:
        """A fit known only by its parameters (e.g. read off a paper), without uncertainty."""
        return cls(a=float(a), b=float(b), a_err=0.0, b_err=0.0, sizes=[], maes=[], r2_log=float("nan"),
                   samples=np.array([[float(a), float(b)]]))

    def predict(self, n):
        """Predicted MAE at training size(s) ``n``."""
        return self.a * np.asarray(n, dtype=float) ** (-self.b)

    def size_for(self, mae: float, ci: float | None = None):
        """Training size at which the fit reaches ``mae``; with ``ci`` (e.g. 0.68) also (low, high) bounds.

        Raises ValueError when the fitted error does not fall with data (b <= 0): no size reaches a
        lower error then, and extrapolating would be meaningless.
        """
        if mae <= 0:
            raise ValueError(f"target MAE must be positive, got {mae}")
        if self.b <= 0:
            raise ValueError(f"the fitted error does not decrease with data (b = {self.b:.3g}); no size reaches "
                             f"MAE {mae:g}")
        n = float((self.a / mae) ** (1.0 / self.b))
        if ci is None:
            return n
        a, b = self.samples[:, 0], self.samples[:, 1]
        ok = b > 0
        if not ok.any():
            return n, float("nan"), float("nan")
        ns = (a[ok] / mae) ** (1.0 / b[ok])
        lo, hi = np.quantile(ns, [(1 - ci) / 2, (1 + ci) / 2])
        return n, float(lo), float(hi)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "a_err": self.a_err, "b_err": self.b_err, "r2_log": self.r2_log,
                "sizes": list(self.sizes), "maes": list(self.maes), "n_bootstrap": int(len(self.samples))}

    def __str__(self) -> str:
        return f"MAE = {self.a:.4g} * N^-({self.b:.3f} +/- {self.b_err:.3f})"


def _line(log_n: np.ndarray, log_e: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(log_n, log_e, 1)
    return float(np.exp(intercept)), float(-slope)


def fit_power_law(sizes, maes, n_boot: int = 1000, seed: int = 0) -> PowerLawFit:
    """Fit MAE = a * N**(-b) by least squares on log-log axes (to the per-size mean MAE).

    Args:
        sizes, maes: one entry per run; repeated sizes are seeds of the same point.
        n_boot: bootstrap resamples for the uncertainty of ``a`` and ``b`` (reported as standard deviations).
    """
    sizes = np.asarray(sizes, dtype=float).ravel()
    maes = np.asarray(maes, dtype=float).ravel()
    if sizes.shape != maes.shape:
        raise ValueError(f"sizes and maes differ in length ({len(sizes)} vs {len(maes)})")
    if not (np.all(np.isfinite(sizes)) and np.all(np.isfinite(maes))):
        raise ValueError("sizes and maes must be finite")
    if np.any(sizes <= 0) or np.any(maes <= 0):
        raise ValueError("a log-log fit needs positive sizes and MAEs")
    distinct = np.unique(sizes)
    if len(distinct) < 2:
        raise ValueError(f"a power-law fit needs at least two distinct training sizes, got {distinct.tolist()}")
    groups = [maes[sizes == s] for s in distinct]
    means = np.array([g.mean() for g in groups])
    a, b = _line(np.log(distinct), np.log(means))
    resid = np.log(means) - np.log(a * distinct ** (-b))
    ss_tot = float(((np.log(means) - np.log(means).mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan")

    rng = np.random.default_rng(seed)
    samples = np.empty((n_boot, 2))
    several_seeds = any(len(g) > 1 for g in groups)
    for k in range(n_boot):
        if several_seeds:
            m = np.array([rng.choice(g, size=len(g), replace=True).mean() for g in groups])
            samples[k] = _line(np.log(distinct), np.log(m))
        else:
            idx = rng.integers(0, len(distinct), len(distinct))
            if len(np.unique(idx)) < 2:  # degenerate resample: a line needs two distinct sizes
                idx = np.array([0, len(distinct) - 1])
            samples[k] = _line(np.log(distinct[idx]), np.log(means[idx]))
    return PowerLawFit(a=a, b=b, a_err=float(samples[:, 0].std()), b_err=float(samples[:, 1].std()),
                       sizes=distinct.tolist(), maes=means.tolist(), r2_log=r2, samples=samples)


def data_equivalent_size(slow: PowerLawFit, fast: PowerLawFit, n: float | None = None, ci: float | None = None):
    """Training size ``slow`` needs to match the error ``fast`` reaches with ``n`` structures.

    With ``n=None`` the comparison point is ``fast``'s best measured error (its largest size), the
    paper's "data-equivalent" figure: e.g. how many HSE structures training from scratch would need
    to match full transfer on the whole HSE set.
    """
    target = float(min(fast.maes)) if n is None else float(fast.predict(n))
    return slow.size_for(target, ci=ci)


def data_equivalents(fits: dict, reference: str = "scratch", ci: float = 0.68) -> dict:
    """For every strategy but ``reference``: the size ``reference`` needs to match its best error.

    Returns ``{strategy: {"size", "needs", "ci", "extrapolation"}}`` (``extrapolation``: ``needs`` over
    the reference's largest measured size; far above 1 means the number is an extrapolation) or
    ``{strategy: {"error": message}}`` when the reference's error does not fall with data.
    """
    out: dict = {}
    if reference not in fits:
        return out
    ref = fits[reference]
    for name, fit in fits.items():
        if name == reference:
            continue
        try:
            n, lo, hi = data_equivalent_size(ref, fit, ci=ci)
        except ValueError as exc:
            out[name] = {"error": str(exc)}
            continue
        out[name] = {"size": max(fit.sizes), "needs": n, "ci": [lo, hi], "extrapolation": n / max(ref.sizes)}
    return out
