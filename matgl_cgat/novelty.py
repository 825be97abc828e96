"""A domain check that sees structure: distance in the model's own representation to its training crystals.

:mod:`matgl_cgat.domain` flags rare elements, odd volumes, short contacts and slabs: facts of the input
alone. It cannot flag diamond (all carbon, an ordinary volume), for which the formation-energy model
answered +2.7 eV/atom. The network's pooled representation, the input of every head, does depend on
the arrangement, so the distance from a crystal's representation to those of the training crystals
says how far the model extrapolates (the idea behind kNN- and latent-distance uncertainty in MatGL's
and ALIGNN's users' screening work). :func:`fit_representation_domain` stores a compressed copy of
the training representations in the model (:class:`~matgl_cgat.layers.RepresentationNovelty`),
places the threshold on validation and measures how much to widen sigma beyond it;
:func:`measure_novelty` reports the same figures on any labelled set (the test split, chemistries
held out of training), which is how the check is validated (``benchmarks/novelty.py``).

The check is fitted after the uncertainty head and belongs to one network: fine-tuning removes it,
and refitting the uncertainty head resets its widening to 1 (refit the check afterwards).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch

from matgl_cgat.uncertainty import checked_head_data, embed, half_width, label_columns

#: Principal components kept of the standardised representation (of 192 features in the "small"
#: preset); the stored training copy is points x COMPONENTS floats.
COMPONENTS = 16
#: Training crystals stored (a seeded subset): 8,000 x 16 floats are 0.5 MB in the model's state.
POINTS = 8000
#: Nearest training crystals averaged over.
NEIGHBORS = 5
#: Share of validation crystals beyond the threshold.
FLAG_SHARE = 0.05
#: Half-width of the 68% interval of the Laplace errors sigma describes, in sigmas (0.81).
LAPLACE_68 = half_width(0.68)


@dataclass(frozen=True)
class NoveltyReport:
    """How flagged crystals fare against the others on one labelled set (first output with labels)."""

    n: int
    flagged: int
    mae_flagged: float
    mae_unflagged: float
    median_novelty: float
    spearman_novelty_error: float  # rank correlation of novelty with the absolute error
    coverage_68_flagged: float | None  # share of flagged crystals' errors inside the 68% interval (widened sigma)
    coverage_68_unflagged: float | None

    @property
    def error_ratio(self) -> float:
        """MAE of flagged crystals over that of the others: above 1 when the flag finds worse answers."""
        return self.mae_flagged / self.mae_unflagged if self.mae_unflagged > 0 else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "error_ratio": self.error_ratio}


@dataclass
class NoveltyFit:
    """The model with its fitted check and the validation figures behind the threshold and widening."""

    model: torch.nn.Module
    threshold: float
    widen: float
    typical: float  # raw distance of a median validation crystal (novelty 1)
    val: NoveltyReport
    n_points: int


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def novelty_report(novelty, abs_error, sigma, threshold: float) -> NoveltyReport:
    """Figures of one set from per-crystal arrays (sigma: already widened, or None without a head)."""
    novelty, abs_error = np.asarray(novelty, float).ravel(), np.asarray(abs_error, float).ravel()
    keep = np.isfinite(abs_error)
    novelty, abs_error = novelty[keep], abs_error[keep]
    flagged = novelty > threshold

    def mae(mask):
        return float(abs_error[mask].mean()) if mask.any() else float("nan")

    cover = {True: None, False: None}
    if sigma is not None:
        inside = abs_error <= LAPLACE_68 * np.asarray(sigma, float).ravel()[keep]
        cover = {f: (float(inside[flagged == f].mean()) if (flagged == f).any() else None) for f in (True, False)}
    return NoveltyReport(int(novelty.size), int(flagged.sum()), mae(flagged), mae(~flagged),
                         float(np.median(novelty)) if novelty.size else float("nan"),
                         _spearman(novelty, abs_error), cover[True], cover[False])


def _first_labelled(pred: torch.Tensor, labels: torch.Tensor, sigma: torch.Tensor | None):
    """(abs error, sigma) of the first output that has labels; NaN where a crystal lacks that label."""
    for j in range(labels.shape[1]):
        if torch.isfinite(labels[:, j]).any():
            return (labels[:, j] - pred[:, j]).abs().numpy(), None if sigma is None else sigma[:, j].numpy()
    raise ValueError("no output has labels in this dataset")


def _answers(model, features: torch.Tensor):
    with torch.no_grad():
        sigma = model._sigma(features)[0] if getattr(model, "sigma_head", None) is not None else None
        return model.novelty(features), sigma


def measure_novelty(model, dataset, target=None, batch_size: int = 128) -> tuple[NoveltyReport, np.ndarray]:
    """The report of a model's novelty check on a labelled dataset, and every crystal's novelty."""
    if getattr(model, "novelty", None) is None:
        raise ValueError("this model has no representation-domain check; fit one with fit_representation_domain")
    features, pred, labels = embed(model, dataset, label_columns(model, target), batch_size)
    novelty, sigma = _answers(model, features)
    abs_error, sig = _first_labelled(pred, labels, sigma)
    threshold = float(model.novelty.threshold)
    return novelty_report(novelty.numpy(), abs_error, sig, threshold), novelty.numpy()


def fit_representation_domain(model, train, val, *, target=None, components: int = COMPONENTS,
                              points: int = POINTS, neighbors: int = NEIGHBORS, flag_share: float = FLAG_SHARE,
                              seed: int = 0, batch_size: int = 128) -> NoveltyFit:
    """A copy of ``model`` with a fitted representation-domain check.

    ``train``: the model's training set (a seeded subset of ``points`` crystals is stored); ``val``: its
    validation set, where the typical distance (novelty 1), the threshold (the ``1 - flag_share``
    quantile of validation novelty) and the widening are measured. The widening is the factor (at
    least 1) that gives flagged validation crystals the same share of errors inside the 68% interval
    as the others, so that sigma beyond the threshold means what it means elsewhere; without an
    uncertainty head it is 1. The test split is not touched.
    """
    if not 0.0 < flag_share < 1.0:
        raise ValueError(f"flag_share must lie strictly between 0 and 1, got {flag_share}")
    train = checked_head_data(train, val, points, seed, "a representation-domain check")
    if len(train) < neighbors + 1:
        raise ValueError(f"the check needs more than neighbors={neighbors} training crystals, got {len(train)}")
    tuned = copy.deepcopy(model)
    tuned.set_novelty(None)
    columns = label_columns(tuned, target)
    f_tr, _, _ = embed(tuned, train, columns, batch_size)
    f_va, p_va, y_va = embed(tuned, val, columns, batch_size)
    f_tr, f_va = f_tr.float(), f_va.float()
    components = min(int(components), f_tr.shape[1], f_tr.shape[0])
    tuned.set_novelty(components, f_tr.shape[0], neighbors)
    check = tuned.novelty
    with torch.no_grad():
        # the same representation up to the order of a sum (a crystal's neighbours listed in another order):
        # judged in the features' own units, before standardising blows rounding up to a spread
        nearest = torch.cdist(f_va, f_tr, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
        if not float(nearest.median()) > 1e-5 * float(f_tr.norm(dim=1).median().clamp(min=1e-30)):
            raise ValueError("most validation crystals have the very representation of training crystals (the same "
                             "composition and arrangement of neighbour shells): the check needs validation crystals "
                             "that differ from the training ones")
        center, spread = f_tr.mean(0), f_tr.std(0).clamp(min=1e-6)
        x = (f_tr - center) / spread
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        check.center.copy_(center)
        check.spread.copy_(spread)
        check.basis.copy_(vh[:components])
        check.points.copy_(x @ vh[:components].T)
        raw = check.raw_distance(check.project(f_va))
        typical = float(torch.quantile(raw, 0.5))  # the middle of an even count, as numpy.median
        if not typical > 1e-6 * float(raw.max().clamp(min=1e-30)) or typical <= 0:
            raise ValueError("most validation crystals have the very representation of training crystals (the same "
                             "composition and arrangement of neighbour shells): the check needs validation crystals "
                             "that differ from the training ones")
        check.typical.fill_(typical)
        novelty = raw / typical
        threshold = float(torch.quantile(novelty, 1.0 - flag_share))
        check.threshold.fill_(threshold)
        check.widen.fill_(1.0)
        _, sigma = _answers(tuned, f_va)
    abs_error, sig = _first_labelled(p_va, y_va, sigma)
    widen = 1.0
    if sig is not None:
        flagged, ok = novelty.numpy() > threshold, np.isfinite(abs_error)
        scaled = abs_error / np.maximum(sig, 1e-12) / LAPLACE_68  # inside the 68% interval where <= 1
        if (flagged & ok).any() and (~flagged & ok).any():
            # the factor that gives flagged crystals the coverage the others have (a ratio of medians
            # overshoots for band gaps, whose errors pile up at 0 for metals)
            coverage = float(np.mean(scaled[~flagged & ok] <= 1.0))
            widen = max(1.0, float(np.quantile(scaled[flagged & ok], coverage)))
        with torch.no_grad():
            check.widen.fill_(widen)
            _, sigma = _answers(tuned, f_va)
        sig = _first_labelled(p_va, y_va, sigma)[1]
    tuned.eval()
    report = novelty_report(novelty.numpy(), abs_error, sig, threshold)
    return NoveltyFit(tuned, threshold, widen, typical, report, int(f_tr.shape[0]))
