"""The metal gate: it decides, it is saved, it is fitted on the frozen network, fine-tuning drops it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat import CGAT
from matgl_cgat.data import load_dataset
from matgl_cgat.gate import choose_threshold, fit_metal_gate
from matgl_cgat.metrics import band_gap_metrics
from tests.conftest import make_model
from matgl_cgat._crystals import symmetric_structure


def _rocksalt(a: str, b: str, lattice: float) -> Structure:
    return symmetric_structure("Fm-3m", Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _fcc(element: str, lattice: float) -> Structure:
    return Structure(Lattice.cubic(lattice), [element] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _gate_to(model: CGAT, logit: float) -> None:
    """Make the gate answer ``logit`` for every crystal (last layer zero, bias = logit)."""
    with torch.no_grad():
        model.metal_head[-1].weight.zero_()
        model.metal_head[-1].bias.fill_(logit)


def test_gate_sets_metals_to_the_floor_and_leaves_non_metals_to_the_regression(nacl):
    model = make_model(output_min=0.0)
    model.set_normalization(2.0, 1.0)
    plain = float(model.predict_structure(nacl, check_domain=False))
    assert plain > 0.1
    model.set_metal_gate(8, threshold=0.5)
    _gate_to(model, 3.0)  # above the threshold: a metal
    assert float(model.predict_structure(nacl, check_domain=False)) == 0.0
    g = model.graph_converter().get_graph(nacl)[0]
    assert float(model.metal_probability(g)) == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-5)
    assert bool(model.is_metal(g))
    _gate_to(model, 0.2)  # below the threshold: the regression's answer, unchanged
    assert float(model.predict_structure(nacl, check_domain=False)) == pytest.approx(plain, rel=1e-6)
    assert not bool(model.is_metal(g))


def test_gate_round_trips_through_save_and_load(tmp_path, nacl):
    model = make_model(output_min=0.0)
    model.set_metal_gate(8, threshold=-0.25)
    model.metadata = {"name": "gated"}
    model.save(tmp_path / "m")
    loaded = CGAT.load(tmp_path / "m")
    assert loaded.metal_head is not None and loaded.metal_threshold == -0.25
    g = model.graph_converter().get_graph(nacl)[0]
    assert torch.allclose(loaded.metal_probability(g), model.metal_probability(g))
    assert float(loaded.predict_structure(nacl, check_domain=False)) == pytest.approx(
        float(model.predict_structure(nacl, check_domain=False)), rel=1e-6)


def test_a_model_without_gate_says_so(nacl):
    model = make_model()
    g = model.graph_converter().get_graph(nacl)[0]
    with pytest.raises(ValueError, match="no metal gate"):
        model.metal_probability(g)


def test_choose_threshold_separates_classes_and_counts_the_regression():
    labels = np.array([0.0, 0.0, 0.0, 1.5, 2.0, 3.0])
    logits = np.array([2.0, 1.5, 1.0, -1.0, -2.0, -0.5])
    regression = np.array([0.4, 0.3, 0.5, 1.4, 2.1, 2.8])
    t = choose_threshold(logits, regression, labels)
    assert -0.5 < t < 1.0  # the only cut with no error on either class
    gated = np.where(logits > t, 0.0, regression)
    m = band_gap_metrics(labels, gated)
    assert m["insulators_called_metals"] == 0.0 and m["metals_given_gap"] == 0.0


def test_band_gap_metrics_counts_both_mistakes_as_rates_of_their_class():
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 1.0, 2.0])
    p = np.array([0.0, 0.5, 0.0, 0.0, 0.05, 0.02, 2.0])
    m = band_gap_metrics(y, p)
    assert m["metals_given_gap"] == pytest.approx(1 / 4)
    assert m["insulators_called_metals"] == pytest.approx(1 / 2)  # 1.0 -> 0.02; 0.3 is no insulator
    assert m["n_insulators"] == 2
    tp, fp, fn = 3, 2, 1  # metal is the positive class; 0.3 -> 0.05 and 1.0 -> 0.02 are false metals
    assert m["metal_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def _two_class_data(tmp_path):
    """Elemental fcc metals at 0 eV and rock-salt insulators with gaps, at varied lattice constants."""
    rng = np.random.default_rng(0)
    structures, labels = [], []
    for i in range(48):
        if i % 2:
            structures.append(_fcc(["Cu", "Al", "Ag", "Ni"][(i // 2) % 4], 3.6 + 0.4 * rng.random()))
            labels.append(0.0)
        else:
            structures.append(_rocksalt(*[("Na", "Cl"), ("Mg", "O"), ("K", "Br")][i % 3], 4.6 + 1.0 * rng.random()))
            labels.append(3.0 + rng.random())
    return load_dataset(structures, "gap", labels=labels, cache_dir=tmp_path, progress=False, workers=1)


def test_fit_metal_gate_learns_metals_on_the_frozen_network(tmp_path):
    ds = _two_class_data(tmp_path)
    model = make_model(output_min=0.0)
    model.set_normalization(1.7, 1.7)
    model.metadata = {"property": "gap"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, val = ds.subset(range(24)), ds.subset(range(24, 48))
    fit = fit_metal_gate(model, train, val, epochs=300)
    assert fit.n_train_metals == 12 and fit.n_train == 24
    assert fit.val_after["metal_accuracy"] >= 0.9
    assert fit.val_after["metals_given_gap"] <= 0.1
    # the network itself is untouched: the same weights, and the source model has no gate
    assert model.metal_head is None
    assert all(torch.equal(before[k], v) for k, v in fit.model.state_dict().items() if not k.startswith("metal_head"))


def test_fit_metal_gate_refuses_data_without_metals(tmp_path):
    structures = [_rocksalt("Na", "Cl", 5.0 + 0.02 * i) for i in range(24)]
    ds = load_dataset(structures, "gap", labels=[3.0 + 0.01 * i for i in range(24)], cache_dir=tmp_path,
                      progress=False, workers=1)
    model = make_model(output_min=0.0)
    model.metadata = {"property": "gap"}
    with pytest.raises(ValueError, match="both classes"):
        fit_metal_gate(model, ds, ds, epochs=5)


def test_finetune_drops_the_gate(tmp_path):
    ds = _two_class_data(tmp_path)
    model = make_model(output_min=0.0)
    model.set_metal_gate(8)
    tuned = model.finetune(ds.subset(range(24)), ds.subset(range(24, 48)), epochs=1, lr=1e-4, batch_size=12,
                           out_dir=tmp_path / "run", progress=False)
    assert tuned.metal_head is None and model.metal_head is not None


def test_joint_training_teaches_the_gate_through_the_network_and_places_its_threshold(tmp_path):
    ds = _two_class_data(tmp_path)
    model = make_model(output_min=0.0)
    model.set_normalization(1.7, 1.7)
    train, val = ds.subset(range(24)), ds.subset(range(24, 48))
    tuned = model.finetune(train, val, renormalize=False, epochs=12, lr=1e-2, batch_size=4, seed=0,
                           out_dir=tmp_path / "joint", progress=False, metal_weight=1.0,
                           metal_regression="non-metals", metal_hidden=16)
    assert model.metal_head is None and tuned.metal_head is not None  # the source is untouched
    record = tuned.metadata["finetune"]["metal_gate"]
    assert record["threshold_logit"] == tuned.metal_threshold
    # the cross-entropy was logged and fell while the whole network trained
    metrics = tuned.fit_result.history
    losses = [row["train_metal_loss"] for row in metrics if "train_metal_loss" in row]
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0]
    m = record["val_after"]
    assert m["metal_accuracy"] >= 0.9 and m["metals_given_gap"] <= 0.1
    # the saved model keeps the jointly trained gate and its threshold
    tuned.save(tmp_path / "saved")
    import matgl

    back = matgl.load_model(tmp_path / "saved")
    assert back.metal_threshold == pytest.approx(tuned.metal_threshold)
    np.testing.assert_allclose(back.predict_dataset(val), tuned.predict_dataset(val), rtol=1e-5, atol=1e-6)


def test_joint_training_needs_a_gate_and_a_known_regression_mode(tmp_path):
    from matgl_cgat.training import TrainConfig, TrainingModule

    with pytest.raises(ValueError, match="metal_regression must be"):
        TrainConfig(metal_weight=1.0, metal_regression="metals")
    with pytest.raises(ValueError, match="has none: build it with metal_hidden"):
        TrainingModule(make_model(), TrainConfig(metal_weight=1.0), ["gap"])
    # without a metal weight the config's record is what it was before the gate could train
    assert "metal_weight" not in TrainConfig().to_dict()
    assert TrainConfig(metal_weight=0.5).to_dict()["metal_weight"] == 0.5


def test_threshold_trade_off_spans_both_extremes(nacl):
    from matgl_cgat.gate import threshold_trade_off

    structures = [_rocksalt("Na", "Cl", 5.0 + 0.05 * i) for i in range(6)] + [_fcc("Cu", 3.5 + 0.05 * i) for i in range(6)]
    ds = load_dataset(structures, "gap", labels=[3.0] * 6 + [0.0] * 6, progress=False, workers=1)
    model = make_model(output_min=0.0)
    model.set_normalization(2.0, 0.5)  # the regression answers about 2 eV for everything
    model.set_metal_gate(4)
    model.metadata = {"property": "gap"}
    curve = threshold_trade_off(model, ds)
    assert curve["n_insulators"] == 6 and curve["n_metals"] == 6
    called, given = curve["insulators_called_metals"], curve["metals_given_gap"]
    # the lowest threshold calls everything a metal, the highest nothing
    assert called[0] == 1.0 and given[0] == 0.0
    assert called[-1] == 0.0 and given[-1] == 1.0
    assert curve["lowest_metals_given_gap_with_insulators_called_metals_at_most"]["0.02"] is not None


def test_predict_table_csv_and_json_show_the_gates_decision(nacl):
    import json

    from matgl_cgat.predict import format_rows, predict_all

    model = make_model(output_min=0.0)
    model.set_normalization(2.0, 1.0)
    model.set_metal_gate(8, threshold=0.5)
    models = {"gap": model}
    crystals = {"salt": nacl, "copper": _fcc("Cu", 3.61)}
    _gate_to(model, 3.0)  # the gate calls everything a metal
    rows = predict_all(models, crystals)
    assert [r["gap metal"][0] for r in rows] == [True, True] and all(r["gap"] == 0.0 for r in rows)
    assert rows[0]["gap metal"][1] == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-5)
    table = format_rows(rows, models, "table")
    assert "metal p 0.95" in table and "metal gate calls the crystal a metal" in table
    _gate_to(model, -3.0)  # and now nothing: the regression's gap, no "metal" in the cell
    rows = predict_all(models, crystals)
    assert [r["gap metal"][0] for r in rows] == [False, False] and rows[0]["gap"] > 0.1
    assert "metal p" not in format_rows(rows, models, "table").split("\n")[1]
    entry = json.loads(format_rows(rows, models, "json"))["predictions"][0]["gap"]
    assert entry["metal"] is False and entry["metal_probability"] == pytest.approx(0.0474, abs=1e-4)
    csv_text = format_rows(rows, models, "csv")
    assert "gap metal,gap metal probability" in csv_text.splitlines()[0] and ",no,0.0474" in csv_text


def test_a_model_of_non_metals_only_is_flagged_where_its_companion_calls_a_metal(nacl):
    from matgl_cgat.predict import format_rows, metal_companions, predict_all

    companion = make_model(output_min=0.0)
    companion.set_metal_gate(8, threshold=0.0)
    companion.metadata = {"name": "Gap-With-Gate", "property": "gap"}
    only = make_model(seed=1, output_min=0.0)
    only.metadata = {"name": "Gap-Of-Nonmetals", "property": "gap_exp", "metal_decision": "none: trained on non-metals",
                     "metal_decision_by": "Gap-With-Gate"}
    crystals = {"salt": nacl, "copper": _fcc("Cu", 3.61)}
    _gate_to(companion, 2.0)  # the companion calls everything a metal
    rows = predict_all({"exp": only, "dft": companion}, crystals)
    assert all(r["exp flags"].companion_metal == ("Gap-With-Gate", pytest.approx(1 / (1 + np.exp(-2.0)))) for r in rows)
    assert all(r["dft flags"].companion_metal is None for r in rows)
    assert "Gap-With-Gate calls it a metal (p 0.88); this model answers for non-metals only" in \
        format_rows(rows, {"exp": only, "dft": companion}, "csv")
    _gate_to(companion, -2.0)  # and now nothing is a metal: no flag
    rows = predict_all({"exp": only, "dft": companion}, crystals)
    assert all(r["exp flags"].companion_metal is None for r in rows) and rows[0]["exp"] == pytest.approx(
        float(only.predict_structure(nacl, check_domain=False)), rel=1e-5)
    # a companion without a gate is an error naming both; a model that decides metals has no companion
    companion.set_metal_gate(None)
    with pytest.raises(ValueError, match="exp: its card names Gap-With-Gate .* has no metal gate"):
        metal_companions({"exp": only, "dft": companion})
    assert metal_companions({"dft": companion}) == {}


def test_the_shipped_measured_gap_model_asks_its_parent_about_metals(copper, nacl):
    import matgl

    from matgl_cgat.predict import predict_all

    exp = matgl.load_model("CGAT-Exp-BandGap")  # alone: its companion is loaded behind the scenes
    rows = predict_all({"CGAT-Exp-BandGap": exp}, {"Cu": copper, "NaCl": nacl})
    assert rows[0]["CGAT-Exp-BandGap flags"].companion_metal[0] == "CGAT-PBE-BandGap"
    assert rows[1]["CGAT-Exp-BandGap flags"].companion_metal is None
    assert list(rows[0]) == list(rows[1]) and not any(k.startswith("CGAT-PBE-BandGap") for k in rows[0])
