"""The representation-domain check: distances right, threshold and widening measured on validation,
sigma widened and flagged where novel, saved and loaded with the model, dropped by fine-tuning."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat import CGAT
from matgl_cgat.data import load_dataset
from matgl_cgat.domain import DomainWarning
from matgl_cgat.layers import RepresentationNovelty
from matgl_cgat.novelty import fit_representation_domain, measure_novelty, novelty_report
from matgl_cgat.uncertainty import fit_sigma_head
from tests.conftest import make_model, random_structure
from matgl_cgat._crystals import symmetric_structure


def _generic(tmp_path, n: int = 60):
    """Low-symmetry crystals of Li-Fe-O-P and Na-Mn-O-S of 4-6 atoms, labels a smooth function of
    composition (CGAT's ranks make a rock salt's graph the same at every lattice constant: varied data
    must vary in arrangement)."""
    structures, labels = [], []
    for i in range(n):
        elements = ("Li", "Fe", "O", "P") if i % 2 else ("Na", "Mn", "O", "S")
        s = random_structure(seed=i, n=4 + i % 3, elements=elements)
        structures.append(s)
        labels.append(1.0 + s.composition.get_atomic_fraction("O") + 0.2 * (i % 2))
    return load_dataset(structures, "gap", labels=labels, cache_dir=tmp_path, progress=False, workers=1)


def _diamond(element: str = "C", a: float = 3.57) -> Structure:
    return symmetric_structure("Fd-3m", Lattice.cubic(a), [element], [[0, 0, 0]])


def test_distance_is_the_mean_over_the_nearest_stored_points_in_the_stored_basis():
    torch.manual_seed(0)
    check = RepresentationNovelty(width=6, components=3, points=40, neighbors=4)
    with torch.no_grad():
        check.center.copy_(torch.randn(6))
        check.spread.copy_(torch.rand(6) + 0.5)
        check.basis.copy_(torch.linalg.qr(torch.randn(6, 3))[0].T)
        check.points.copy_(torch.randn(40, 3))
        check.typical.fill_(2.0)
    features = torch.randn(7, 6)
    coords = ((features - check.center) / check.spread) @ check.basis.T
    brute = np.sort(np.linalg.norm(coords.numpy()[:, None] - check.points.numpy()[None], axis=2), axis=1)[:, :4]
    assert np.allclose(check(features).numpy(), brute.mean(1) / 2.0, atol=1e-5)
    # a stored point measured against the others: its zero distance to itself is left out
    self_distance = check.raw_distance(check.points[:5], exclude_self=True).numpy()
    others = np.sort(np.linalg.norm(check.points.numpy()[:5, None] - check.points.numpy()[None], axis=2), axis=1)[:, 1:5]
    assert np.allclose(self_distance, others.mean(1), atol=1e-5)


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="components must lie in 1..6"):
        RepresentationNovelty(width=6, components=7, points=10)
    with pytest.raises(ValueError, match="stored points"):
        RepresentationNovelty(width=6, components=2, points=3, neighbors=5)


def _fitted(tmp_path, **kwargs):
    ds = _generic(tmp_path)
    model = make_model(output_min=0.0)
    model.set_normalization(1.5, 0.5)
    model.metadata = {"property": "gap"}
    train, val = ds.subset(range(0, 36)), ds.subset(range(36, 60))
    sigma = fit_sigma_head(model, train, val, epochs=50).model
    return fit_representation_domain(sigma, train, val, components=4, neighbors=3, **kwargs), sigma, train, val


def test_fit_places_the_threshold_on_validation_and_leaves_the_network_alone(tmp_path):
    fit, source, train, val = _fitted(tmp_path, flag_share=0.25)
    assert source.novelty is None and fit.model.novelty is not None  # a copy carries the check
    assert fit.n_points == 36 and tuple(fit.model.novelty.points.shape) == (36, 4)
    report, novelty = measure_novelty(fit.model, val)
    assert report.n == 24 and report.median_novelty == pytest.approx(1.0, abs=1e-5)  # novelty 1 = typical
    assert report.flagged == 6 == fit.val.flagged  # the top quarter of validation, as asked
    assert fit.widen >= 1.0 and float(fit.model.novelty.widen) == pytest.approx(fit.widen)
    # the regression and the sigma head are the source model's
    g = fit.model.graph_converter().get_graph(random_structure(seed=99, n=5))[0]
    assert torch.equal(fit.model(g), source(g))
    train_report, _ = measure_novelty(fit.model, train)
    assert train_report.median_novelty < 1.0  # the stored crystals lie nearer themselves than validation does


def test_an_unfamiliar_structure_is_flagged_and_its_sigma_widened(tmp_path):
    fit, source, _, _ = _fitted(tmp_path)
    model = fit.model
    with torch.no_grad():
        model.novelty.widen.fill_(3.0)  # a visible factor for the test
    far = _diamond("Si", 5.43)
    near = random_structure(seed=7, n=5, elements=("Li", "Fe", "O", "P"))  # a training crystal
    g = model.graph_converter().get_graph(far)[0]
    said, plain = model.answers(g), source.answers(g)
    threshold = float(model.novelty.threshold)
    assert float(said.novelty[0]) > threshold  # diamond-structure Si among rock salts
    assert float(said.sigma[0, 0]) == pytest.approx(3.0 * float(plain.sigma[0, 0]), rel=1e-5)
    assert torch.equal(said.value, plain.value)
    with pytest.warns(DomainWarning, match="unlike the training crystals.*sigma widened x3.00"):
        _, sigma = model.predict_structure(far, return_sigma=True, check_strain=False)
    assert float(sigma) == pytest.approx(float(said.sigma[0, 0]), rel=1e-6)
    g_near = model.graph_converter().get_graph(near)[0]
    near_said = model.answers(g_near)
    assert float(near_said.novelty[0]) <= threshold
    assert float(near_said.sigma[0, 0]) == pytest.approx(float(source.answers(g_near).sigma[0, 0]), rel=1e-6)
    with warnings.catch_warnings(record=True) as caught:  # (the tiny model stores no element counts: that flag
        warnings.simplefilter("always")  # shows; the representation's must not)
        model.predict_structure(near)
    assert caught and not any("unlike the training crystals" in str(w.message) for w in caught)


def test_prediction_tables_carry_the_novelty_and_the_flag(tmp_path):
    from matgl_cgat.predict import format_rows, predict_all, table_columns

    fit, _, _, _ = _fitted(tmp_path)
    models = {"gap": fit.model}
    rows = predict_all(models, {"salt": random_structure(seed=7, n=5), "si": _diamond("Si", 5.43)})
    assert "gap novelty" in table_columns(models)
    assert rows[1]["gap novelty"] > float(fit.model.novelty.threshold) >= rows[0]["gap novelty"]
    assert rows[1]["gap flags"].novelty == pytest.approx(rows[1]["gap novelty"])
    assert rows[0]["gap flags"].novelty is None
    table = format_rows(rows, models, "table")
    assert f"novel={rows[1]['gap novelty']:.1f}" in table.splitlines()[2]
    entry = json.loads(format_rows(rows, models, "json"))["predictions"][1]["gap"]
    assert entry["novelty"] == pytest.approx(rows[1]["gap novelty"], abs=0.01)
    assert any("unlike the training crystals" in m for m in entry["flags"])
    header = format_rows(rows, models, "csv").splitlines()[0].split(",")
    assert header.index("gap novelty") == header.index("gap sigma") + 1


def test_the_check_round_trips_through_save_and_the_checked_loader(tmp_path):
    from matgl_cgat.pretrained._resolve import load_folder

    fit, _, _, _ = _fitted(tmp_path)
    fit.model.metadata = {"name": "checked", "property": "gap", "units": "eV"}
    fit.model.save(tmp_path / "m")
    loaded = load_folder(tmp_path / "m")
    g = fit.model.graph_converter().get_graph(_diamond("Si", 5.43))[0]
    a, b = fit.model.answers(g), loaded.answers(g)
    assert torch.equal(a.novelty, b.novelty) and torch.equal(a.sigma, b.sigma)
    assert float(loaded.novelty.threshold) == pytest.approx(fit.threshold)


def test_fine_tuning_drops_the_check_and_refitting_sigma_resets_the_widening(tmp_path):
    fit, _, train, val = _fitted(tmp_path)
    tuned = fit.model.finetune(train, val, epochs=1, lr=1e-4, batch_size=12, out_dir=tmp_path / "run", progress=False)
    assert tuned.novelty is None and fit.model.novelty is not None
    with torch.no_grad():
        fit.model.novelty.widen.fill_(2.0)
    with pytest.warns(UserWarning, match="no longer widens sigma"):
        refit = fit_sigma_head(fit.model, train, val, epochs=5).model
    assert float(refit.novelty.widen) == 1.0


def test_report_compares_flagged_and_unflagged_errors():
    report = novelty_report([0.5, 0.9, 1.1, 3.0, 4.0], [0.1, 0.1, 0.2, 1.0, 0.6], [1.0, 1.0, 1.0, 1.0, 1.0], 2.0)
    assert report.flagged == 2 and report.mae_flagged == pytest.approx(0.8)
    assert report.mae_unflagged == pytest.approx(0.4 / 3) and report.error_ratio == pytest.approx(6.0)
    assert report.coverage_68_flagged == 0.5 and report.coverage_68_unflagged == 1.0
    assert report.spearman_novelty_error > 0.8
    with pytest.raises(ValueError, match="flag_share"):
        fit_representation_domain(make_model(), None, None, flag_share=1.0)


def test_validation_identical_to_training_is_refused(tmp_path):
    rocksalts = [symmetric_structure("Fm-3m", Lattice.cubic(5.0 + 0.01 * i), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
                 for i in range(40)]  # shell ranks: the same graph at every lattice constant
    ds = load_dataset(rocksalts, "gap", labels=[3.0] * 40, cache_dir=tmp_path, progress=False, workers=1)
    model = make_model()
    model.metadata = {"property": "gap"}
    with pytest.raises(ValueError, match="differ from the training ones"):
        fit_representation_domain(model, ds.subset(range(20)), ds.subset(range(20, 40)), components=4)
