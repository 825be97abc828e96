"""Metrics checked against values computed by hand on small arrays."""

from __future__ import annotations

import json
import math

import pytest

from matgl_cgat.metrics import band_gap_metrics, metrics_for, per_output_mae, regression_metrics, stability_metrics

# Errors 0, 1, -1, 2: MAE 1, RMSE sqrt(6/4); mean label 2.5 gives SS_tot 5, so R² = 1 - 6/5.
Y_TRUE = [1.0, 2.0, 3.0, 4.0]
Y_PRED = [1.0, 3.0, 2.0, 6.0]

# Labels: three metals, three non-metals. Predictions: idx 0 and 2 metal (right), idx 1 missed, idx 3 false metal.
GAP_TRUE = [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
GAP_PRED = [0.05, 0.5, 0.0, 0.0, 2.5, 3.0]

# Stable labels at idx 0, 1, 4; predicted stable at 0, 2, 3, 4 -> tp 2, fp 2, fn 1, tn 0.
HULL_TRUE = [-0.1, 0.0, 0.05, 0.2, 0.0]
HULL_PRED = [-0.02, 0.1, -0.01, -0.3, 0.0]


def test_regression_hand_values():
    m = regression_metrics(Y_TRUE, Y_PRED)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(math.sqrt(1.5))
    assert m["r2"] == pytest.approx(-0.2)
    assert m["max_error"] == pytest.approx(2.0)


def test_regression_r2_limits():
    assert regression_metrics(Y_TRUE, Y_TRUE)["r2"] == 1.0
    assert regression_metrics(Y_TRUE, [2.5] * 4)["r2"] == pytest.approx(0.0)
    constant = regression_metrics([3.0, 3.0], [3.0, 4.0])
    assert math.isnan(constant["r2"])
    assert constant["mae"] == pytest.approx(0.5)


def test_regression_rejects_bad_input():
    with pytest.raises(ValueError, match=r"differ in length \(4 vs 3\)"):
        regression_metrics(Y_TRUE, Y_PRED[:3])
    with pytest.raises(ValueError, match="empty"):
        regression_metrics([], [])
    with pytest.raises(ValueError, match=r"y_pred has 2 non-finite .*index 1"):
        regression_metrics(Y_TRUE, [1.0, float("nan"), 2.0, float("inf")])
    with pytest.raises(ValueError, match=r"y_true has 1 non-finite .*index 3"):
        band_gap_metrics([0.0, 1.0, 2.0, float("nan")], Y_PRED)


def test_band_gap_classification():
    m = band_gap_metrics(GAP_TRUE, GAP_PRED)
    assert m["metal_fraction"] == pytest.approx(0.5)
    assert m["metal_accuracy"] == pytest.approx(4 / 6)
    assert m["metal_precision"] == pytest.approx(2 / 3)
    assert m["metal_recall"] == pytest.approx(2 / 3)
    assert m["n_nonmetals"] == 3 and m["n_metals"] == 3
    assert m["mae_nonmetals"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert m["mae_metals"] == pytest.approx((0.05 + 0.5 + 0.0) / 3)


def test_band_gap_threshold_is_strict_and_shared():
    # A gap equal to the threshold is not a metal, for label and prediction alike.
    m = band_gap_metrics([0.1, 0.0], [0.1, 0.2], metal_threshold=0.1)
    assert m["n_metals"] == 1 and m["metal_accuracy"] == pytest.approx(0.5)
    assert math.isnan(m["metal_precision"])
    assert m["metal_recall"] == 0.0


def test_band_gap_undefined_is_nan():
    m = band_gap_metrics([1.0, 2.0], [1.5, 2.0])
    assert m["n_metals"] == 0 and m["metal_fraction"] == 0.0 and m["metal_accuracy"] == 1.0
    assert math.isnan(m["metal_precision"]) and math.isnan(m["metal_recall"]) and math.isnan(m["mae_metals"])
    assert m["mae_nonmetals"] == pytest.approx(0.25)


def test_stability_f1():
    m = stability_metrics(HULL_TRUE, HULL_PRED)
    assert m["n_stable"] == 3 and m["n_predicted_stable"] == 4
    assert m["stable_fraction"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 7)
    assert m["accuracy"] == pytest.approx(0.4)


def test_stability_threshold_and_undefined():
    # With a 0.1 eV/atom tolerance idx 1 (0.1 predicted) and idx 2 (0.05 label) become stable too.
    assert stability_metrics(HULL_TRUE, HULL_PRED, threshold=0.1)["recall"] == 1.0
    m = stability_metrics([0.2, 0.3], [0.1, 0.4])
    assert m["n_stable"] == 0 and m["n_predicted_stable"] == 0 and m["accuracy"] == 1.0
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and math.isnan(m["f1"])
    # No predicted stable, but stable labels exist: precision undefined, recall and F1 are 0.
    m = stability_metrics([-0.1, 0.3], [0.1, 0.4])
    assert math.isnan(m["precision"]) and m["recall"] == 0.0 and m["f1"] == 0.0


def test_metrics_for_dispatch():
    gap = metrics_for("band_gap", GAP_TRUE, GAP_PRED)
    assert gap["mae"] == pytest.approx(regression_metrics(GAP_TRUE, GAP_PRED)["mae"])
    assert "metal_recall" in gap and "f1" not in gap
    hull = metrics_for("e_above_hull", HULL_TRUE, HULL_PRED, threshold=0.1)
    assert hull["recall"] == 1.0 and "metal_recall" not in hull and "r2" in hull
    assert metrics_for("Gap_PBE", GAP_TRUE, GAP_PRED, metal_threshold=0.6)["n_metals"] == 3
    plain = metrics_for("formation_energy", Y_TRUE, Y_PRED)
    assert set(plain) == {"n", "mae", "rmse", "r2", "max_error"}
    with pytest.raises(TypeError, match="formation_energy"):
        metrics_for("formation_energy", Y_TRUE, Y_PRED, threshold=0.1)


def test_outputs_are_plain_python_and_json_serialisable():
    import numpy as np

    for target, t, p in (("band_gap", GAP_TRUE, GAP_PRED), ("e_above_hull", HULL_TRUE, HULL_PRED),
                         ("energy", np.array(Y_TRUE), np.array(Y_PRED, dtype=np.float32))):
        m = metrics_for(target, t, p)
        assert all(type(v) in (int, float) for v in m.values()), m
        assert json.loads(json.dumps(m)).keys() == m.keys()
    assert isinstance(metrics_for("band_gap", [1.0], [1.0])["n_nonmetals"], int)


def test_per_output_mae_scores_each_output_on_its_own_labels():
    nan = float("nan")
    pred = [[1.0, 2.0, -0.5], [2.0, 3.0, 0.5], [3.0, 9.0, -1.0]]
    labels = {"pbe": [1.5, 2.0, 3.0], "hse": [nan, 4.0, nan], "scan": [nan, nan, nan]}
    out = per_output_mae(pred, labels)
    assert out["pbe"] == {"n": 3, "mae": pytest.approx(0.5 / 3)}
    # HSE is scored on its single labelled row only; the 9.0 on an unlabelled row must not count.
    assert out["hse"] == {"n": 1, "mae": pytest.approx(1.0)}
    assert out["scan"]["n"] == 0 and math.isnan(out["scan"]["mae"])
    # A floor bounds one output's predictions before scoring, and only that output's.
    floored = per_output_mae([[-0.5, -0.5], [1.0, 1.0]], {"gap": [0.0, 1.0], "other": [0.0, 1.0]},
                             floors={"gap": 0.0})
    assert floored["gap"]["mae"] == 0.0 and floored["other"]["mae"] == pytest.approx(0.25)


def test_per_output_mae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="2 output.*3 label column"):
        per_output_mae([[1.0, 2.0]], {"a": [1.0], "b": [2.0], "c": [3.0]})
    with pytest.raises(ValueError, match="'b' have 2 rows"):
        per_output_mae([[1.0, 2.0]], {"a": [1.0], "b": [2.0, 3.0]})
    with pytest.raises(ValueError, match="non-finite"):
        per_output_mae([[float("nan")]], {"a": [1.0]})
