"""Power-law fits, data-equivalent sizes, the budget planner and the resumable learning-curve runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from .conftest import make_model, random_structure

from matgl_cgat.data import load_dataset
from matgl_cgat.scaling import (
    data_equivalent_size,
    fit_power_law,
    fit_results,
    load_results,
    plan_budget,
    run_learning_curve,
    summarize,
)


def test_fit_recovers_a_known_exponent_exactly():
    sizes = np.array([100, 300, 1000, 3000, 10000])
    fit = fit_power_law(sizes, 5.0 * sizes**-0.4, n_boot=50)
    assert fit.a == pytest.approx(5.0, rel=1e-9) and fit.b == pytest.approx(0.4, rel=1e-9)
    assert fit.r2_log == pytest.approx(1.0)
    assert fit.predict(2000) == pytest.approx(5.0 * 2000**-0.4)
    assert fit.size_for(5.0 * 5000**-0.4) == pytest.approx(5000, rel=1e-9)
    assert fit.b_err < 1e-9  # noiseless points: every resample gives the same line


def test_bootstrap_over_seeds_covers_the_true_exponent():
    rng = np.random.default_rng(1)
    sizes = np.repeat([100, 300, 1000, 3000], 4)
    maes = 2.0 * sizes**-0.3 * np.exp(rng.normal(0, 0.05, len(sizes)))
    fit = fit_power_law(sizes, maes, n_boot=500)
    assert 0.0 < fit.b_err < 0.1
    assert abs(fit.b - 0.3) < 3 * fit.b_err
    n, lo, hi = fit.size_for(0.2, ci=0.9)
    assert lo < n < hi
    assert fit.sizes == [100, 300, 1000, 3000] and len(fit.maes) == 4  # per-size means are what is fitted


def test_single_seed_bootstrap_resamples_points():
    sizes = np.array([100, 200, 400, 800, 1600])
    maes = 1.0 * sizes**-0.5 * np.array([1.05, 0.97, 1.02, 0.99, 1.01])
    fit = fit_power_law(sizes, maes, n_boot=300)
    assert fit.b == pytest.approx(0.5, abs=0.03) and fit.b_err > 0


def test_data_equivalent_size():
    scratch = fit_power_law([100, 1000, 10000], [2.0 * n**-0.3 for n in (100, 1000, 10000)], n_boot=20)
    transfer = fit_power_law([100, 1000], [1.0 * n**-0.3 for n in (100, 1000)], n_boot=20)
    # scratch needs 2**(1/0.3) ~ 10.08x the data of transfer for the same error
    assert data_equivalent_size(scratch, transfer, n=1000) == pytest.approx(1000 * 2 ** (1 / 0.3), rel=1e-6)
    assert data_equivalent_size(scratch, transfer) == pytest.approx(1000 * 2 ** (1 / 0.3), rel=1e-6)


@pytest.mark.parametrize(
    "sizes, maes, message",
    [([100], [0.5], "two distinct"), ([100, 100], [0.5, 0.4], "two distinct"), ([100, 200], [0.5], "length"),
     ([100, 200], [0.5, -0.1], "positive"), ([100, 200], [0.5, float("nan")], "finite")],
)
def test_fit_refuses_bad_input(sizes, maes, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(sizes, maes)


def test_size_for_refuses_a_flat_or_rising_curve():
    fit = fit_power_law([100, 1000], [0.5, 0.6], n_boot=10)
    assert fit.b < 0
    with pytest.raises(ValueError, match="does not decrease"):
        fit.size_for(0.3)


def test_planner_picks_the_cheaper_route():
    train_fit = fit_power_law([100, 1000], [1.0 * n**-0.3 for n in (100, 1000)], n_boot=10)
    pre_fit = fit_power_law([1000, 10000], [1.0 * (n / 10) ** -0.3 for n in (1000, 10000)], n_boot=10)
    # the curves agree at the current point; 10 cheap structures are worth one expensive one here, so
    # spending on cheap data wins only when an expensive calculation costs more than 10 cheap ones
    plan = plan_budget(pre_fit, train_fit, n_pretrain=10000, n_train=1000, cost_ratio=5, budgets=[0, 5000, 50000])
    assert plan.mae_now_pretrain_curve == pytest.approx(plan.mae_now_train_curve)
    r = plan.rows[1]
    assert r["extra_expensive"] == 1000 and r["mae_expensive"] == pytest.approx(2000**-0.3)
    assert r["mae_cheap"] == pytest.approx(1500**-0.3)
    assert r["better"] == "expensive"  # +5000 cheap is worth +500 expensive, less than the +1000 bought
    plan20 = plan_budget(pre_fit, train_fit, 10000, 1000, cost_ratio=20, budgets=[20000])
    assert plan20.rows[0]["better"] == "cheap"
    plan2 = plan_budget(pre_fit, train_fit, 10000, 1000, cost_ratio=2, budgets=[20000])
    assert plan2.rows[0]["better"] == "expensive"
    assert plan.rows[0]["better"] == "either"
    assert "expensive = 5 x cheap" in plan.table()
    json.dumps(plan.to_dict())
    with pytest.raises(ValueError, match="cost_ratio"):
        plan_budget(pre_fit, train_fit, 10000, 1000, cost_ratio=0, budgets=[1])


def _data(n: int, seed: int):
    structures = [random_structure(seed * 100 + i, n=3 + i % 3, elements=("O", "Mg", "Zn")) for i in range(n)]
    labels = [1.0 + 3.0 * s.composition.get_atomic_fraction("O") for s in structures]
    return load_dataset(structures, "y", labels=labels, progress=False)


def test_learning_curve_runs_resumes_and_refuses_changed_settings(tmp_path):
    parent = make_model()
    parent.set_normalization(2.0, 1.0)
    train, val, test = _data(20, 0), _data(6, 1), _data(8, 2)
    kw = {"target": "y", "out_dir": tmp_path / "lc", "parent": parent, "epochs": 2, "batch_size": 8,
          "progress": False}
    rows = run_learning_curve(train, val, test, sizes=[5, 0], strategies=["scratch", "head"], seeds=[0], **kw)
    assert [(r["size"], r["strategy"]) for r in rows] == [(5, "scratch"), (5, "head"), (20, "scratch"), (20, "head")]
    for r in rows:
        assert r["test_mae"] > 0 and "test_rmse" in r and "test_r2" in r and r["epochs"] == 2
    pred = (tmp_path / "lc" / "runs" / "head_n20_s0" / "test_predictions.csv").read_text().splitlines()
    assert pred[0] == "id,y_true,y_pred" and len(pred) == 1 + len(test)
    # predictions on disk are the ones the reported MAE was computed from
    y, p = np.array([[float(v) for v in line.split(",")[1:]] for line in pred[1:]]).T
    assert np.abs(y - p).mean() == pytest.approx(rows[-1]["test_mae"], rel=1e-4)

    # resume: a second call with a grown grid trains only the new runs
    before = (tmp_path / "lc" / "results.json").read_text()
    rows2 = run_learning_curve(train, val, test, sizes=[5, 0], strategies=["scratch", "head"], seeds=[0, 1], **kw)
    assert rows2[:4] == json.loads(before)
    assert len(rows2) == 8 and {r["seed"] for r in rows2[4:]} == {1}
    assert load_results(tmp_path / "lc" / "results.csv")[5]["size"] == rows2[5]["size"]
    summary = summarize(rows2)
    assert {(s["strategy"], s["size"], s["n_seeds"]) for s in summary} == {
        ("scratch", 5, 2), ("scratch", 20, 2), ("head", 5, 2), ("head", 20, 2)}
    assert set(fit_results(rows2, n_boot=20)) == {"scratch", "head"}

    with pytest.raises(ValueError, match="different settings.*epochs"):
        run_learning_curve(train, val, test, sizes=[5], strategies=["scratch"], seeds=[0], **{**kw, "epochs": 3})
    with pytest.raises(ValueError, match="need a parent"):
        run_learning_curve(train, val, test, sizes=[5], strategies=["full"], target="y", out_dir=tmp_path / "x")
