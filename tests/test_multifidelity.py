"""Multi-fidelity CGAT: the functional as an input (per-fidelity scale and shift of the readout)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat.data import load_dataset
from matgl_cgat.transfer import add_fidelity, apply_policy, multi_fidelity_from

from .conftest import make_model
from matgl_cgat._crystals import symmetric_structure


def rocksalt(a: float, species=("Na", "Cl")) -> Structure:
    return symmetric_structure("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5] * 3])


@pytest.fixture
def source():
    model = make_model()
    model.set_normalization(1.0, 2.0)
    model.metadata = {"name": "src", "property": "gap_pbe", "domain": {"n_structures": 1}}
    return model


def test_a_new_multi_fidelity_model_starts_as_its_source_in_each_fidelitys_units(source):
    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)})
    s = rocksalt(5.6)
    base = float(source.predict_structure(s, check_domain=False))
    both = mf.predict_structure(s, check_domain=False)
    assert both.shape == (2,) and float(both[0]) == pytest.approx(base, abs=1e-5)
    normalised = (base - 1.0) / 2.0
    assert float(mf.predict_structure(s, fidelity="HSE", check_domain=False)) == pytest.approx(2.0 + 3.0 * normalised, abs=1e-5)
    assert mf.metadata == {"parent": "src", "fidelities": ["pbe", "hse"], "label_columns": {"pbe": "pbe", "hse": "hse"}}
    assert source.fidelities is None and source.ntargets == 1  # the source is untouched


def test_fidelity_names_are_checked(source):
    mf = multi_fidelity_from(source, {"pbe": (0.0, 1.0), "hse": (0.0, 1.0)})
    with pytest.raises(ValueError, match=r"unknown fidelity 'scan'; this model knows \['pbe', 'hse'\]"):
        mf.predict_structure(rocksalt(5.6), fidelity="scan", check_domain=False)
    with pytest.raises(ValueError, match="single-fidelity model"):
        source.predict_structure(rocksalt(5.6), fidelity="hse", check_domain=False)
    with pytest.raises(ValueError, match="distinct"):
        multi_fidelity_from(source, {"pbe": (0.0, 1.0), "PBE": (0.0, 1.0)})
    with pytest.raises(ValueError, match="use add_fidelity"):
        multi_fidelity_from(mf, {"x": (0.0, 1.0)})
    with pytest.raises(ValueError, match=r"the model's fidelities are \['pbe', 'hse'\]"):
        apply_policy(mf, "fidelity:scan")


def test_save_and_load_keep_the_fidelities(source, tmp_path):
    import matgl

    import matgl_cgat  # noqa: F401

    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)})
    with torch.no_grad():
        mf.fidelity_film[1].film.normal_(0.0, 0.3)
    mf.save(tmp_path / "mf")
    again = matgl.load_model(str(tmp_path / "mf"))
    assert again.fidelities == ("pbe", "hse")
    s = rocksalt(5.5)
    assert torch.allclose(again.predict_structure(s, check_domain=False), mf.predict_structure(s, check_domain=False))


def test_adding_a_fidelity_and_training_it_alone_cannot_change_the_others(source):
    torch.manual_seed(0)
    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)})
    with torch.no_grad():
        mf.fidelity_film[1].film.normal_(0.0, 0.3)
    grown = add_fidelity(mf, "scan", mean=2.5, std=1.0, start_from="hse")
    assert grown.fidelities == ("pbe", "hse", "scan") and torch.equal(grown.fidelity_film[2].film, mf.fidelity_film[1].film)
    structures = [rocksalt(5.0 + 0.1 * i, ("Na", "Cl") if i % 2 else ("K", "Br")) for i in range(12)]
    scan = [1.0 + 0.3 * i for i in range(12)]
    missing = [None] * 12
    data = load_dataset(structures, ["pbe", "hse", "scan"], labels={"pbe": missing, "hse": missing, "scan": scan},
                        require="any", progress=False).with_targets(["pbe", "hse", "scan"])
    before = np.stack([grown.predict_structure(s, check_domain=False).numpy() for s in structures])
    tuned = grown.finetune(data.subset(range(8)), data.subset(range(8, 12)), policy="fidelity:scan",
                           renormalize=False, epochs=3, lr=3e-2, batch_size=4, progress=False)
    after = np.stack([tuned.predict_structure(s, check_domain=False).numpy() for s in structures])
    assert np.array_equal(after[:, :2], before[:, :2])  # PBE and HSE bit for bit
    assert not np.allclose(after[:, 2], before[:, 2])  # SCAN learned
    assert tuned.finetune_report.trainable == 2 * tuned.readout.out_dim


def test_finetune_refuses_label_columns_that_do_not_match_the_fidelities(source):
    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)})
    structures = [rocksalt(5.0 + 0.1 * i) for i in range(6)]
    data = load_dataset(structures, "gap", labels=[0.1 * i for i in range(6)], progress=False)
    with pytest.raises(ValueError, match=r"one label column per fidelity \['pbe', 'hse'\]"):
        mf.finetune(data, None, epochs=1, progress=False)


def test_per_fidelity_splits_keep_each_label_only_in_its_own_part():
    structures = [rocksalt(5.0 + 0.1 * i) for i in range(5)]
    ds = load_dataset(structures, ["pbe", "hse"], labels={"pbe": [0.1, 0.2, 0.3, 0.4, 0.5],
                                                          "hse": [1.1, None, 1.3, None, None]},
                      ids=["a", "b", "c", "d", "e"], require="any", progress=False).with_targets(["pbe", "hse"])
    train = ds.keeping_labels({"pbe": ["a", "b", "c"], "hse": ["c"]})  # 'a' is an HSE test crystal, say
    assert train.ids == ["a", "b", "c"]
    assert np.allclose(train.labels["pbe"], [0.1, 0.2, 0.3])
    assert np.isnan(train.labels["hse"][0]) and train.labels["hse"][2] == pytest.approx(1.3)
    view = train.subset([0, 2])  # views keep the mask
    assert np.isnan(view.labels["hse"][0]) and [float(view[i][3]["hse"]) for i in (1,)] == pytest.approx([1.3])
    assert np.isnan(float(view[0][3]["hse"]))
    test = ds.keeping_labels({"pbe": ["d"], "hse": ["a"]})
    assert test.ids == ["a", "d"] and np.isnan(test.labels["pbe"][0]) and test.labels["hse"][0] == pytest.approx(1.1)


def test_cli_predict_shows_one_column_per_fidelity_or_the_chosen_one(source, tmp_path, capsys):
    from matgl_cgat.cli import main

    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)})
    mf.metadata["units"] = "eV"
    mf.save(tmp_path / "mf")
    s = rocksalt(5.6)
    s.to(filename=str(tmp_path / "nacl.cif"))
    args = ["predict", str(tmp_path / "nacl.cif"), "--model", str(tmp_path / "mf"), "--labels", "none"]
    assert main([*args, "--out", str(tmp_path / "all.csv")]) == 0
    header = (tmp_path / "all.csv").read_text().splitlines()[0]
    assert "mf[pbe] (eV)" in header and "mf[hse] (eV)" in header
    assert main([*args, "--fidelity", "HSE", "--out", str(tmp_path / "hse.csv")]) == 0
    header, row = (tmp_path / "hse.csv").read_text().splitlines()[:2]
    assert "mf[hse] (eV)" in header and "pbe" not in header
    expected = float(mf.predict_structure(s, fidelity="hse", check_domain=False))
    assert float(row.split(",")[2]) == pytest.approx(expected, abs=1e-4)
    assert main([*args, "--fidelity", "scan"]) == 2
    assert "unknown fidelity 'scan'" in capsys.readouterr().err


def test_sigma_head_for_a_multi_fidelity_model_gives_one_sigma_per_fidelity(source):
    from matgl_cgat.uncertainty import fit_sigma_head, predict_with_sigma

    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)})
    rng = np.random.default_rng(0)
    structures = [rocksalt(5.0 + 0.02 * i, ("Na", "Cl") if i % 2 else ("K", "Br")) for i in range(60)]
    pbe = list(rng.normal(1.0, 0.5, 60))
    hse = [v + 1.0 if i % 3 == 0 else None for i, v in enumerate(pbe)]  # a third have HSE labels
    ds = load_dataset(structures, ["pbe", "hse"], labels={"pbe": pbe, "hse": hse}, require="any",
                      progress=False).with_targets(["pbe", "hse"])
    fit = fit_sigma_head(mf, ds.subset(range(30)), ds.subset(range(30, 60)), epochs=50)
    assert set(fit.val_by_target) == {"pbe", "hse"} and fit.val_by_target["hse"].n == 10
    pred, sigma = predict_with_sigma(fit.model, ds)
    assert pred.shape == sigma.shape == (60, 2) and np.all(sigma > 0)
    one, s_one = fit.model.predict_structure(structures[0], fidelity="hse", return_sigma=True, check_domain=False)
    assert float(s_one) == pytest.approx(float(sigma[0, 1]), rel=1e-4) and float(one) == pytest.approx(pred[0, 1], rel=1e-4)


def test_one_fidelity_and_batches_pick_the_right_column(source):
    from matgl_cgat.graph import batch_graphs

    from matgl_cgat.predict import FidelityView

    one = multi_fidelity_from(source, {"hse": (2.0, 3.0)})
    s = rocksalt(5.6)
    assert float(one.predict_structure(s, fidelity="hse", check_domain=False)) == pytest.approx(
        float(one.predict_structure(s, check_domain=False)))
    graphs = batch_graphs([one.graph_converter().get_graph(rocksalt(a))[0] for a in (5.0, 5.5, 6.0)])
    view = FidelityView(one, "hse")
    assert torch.allclose(view(graphs), one(graphs).reshape(-1))  # a batch of 3, not its first value
    two = add_fidelity(one, "scan", 1.0, 1.0)
    assert torch.allclose(FidelityView(two, "scan")(graphs), two(graphs)[:, 1])
    with pytest.raises(ValueError, match="renormalize=False"):
        data = load_dataset([s, rocksalt(5.0)], ["hse", "scan"], labels={"hse": [None, None], "scan": [1.0, 2.0]},
                            require="any", progress=False).with_targets(["hse", "scan"])
        two.finetune(data, None, policy="fidelity:scan", epochs=1, progress=False)


def _grown_and_scan_data(source):
    torch.manual_seed(0)
    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)}, label_columns={"pbe": "gap_pbe",
                                                                                           "hse": "gap_hse"})
    with torch.no_grad():
        mf.fidelity_film[1].film.normal_(0.0, 0.3)
    grown = add_fidelity(mf, "scan", mean=2.5, std=1.0, start_from="hse", label_column="gap_scan")
    structures = [rocksalt(5.0 + 0.1 * i, ("Na", "Cl") if i % 2 else ("K", "Br")) for i in range(12)]
    return grown, structures, [4.0 + 0.1 * i for i in range(12)]  # above every start: learning shows in the MAE


def test_one_label_column_trains_the_named_fidelity_exactly_as_a_masked_several_column_file(source):
    grown, structures, scan = _grown_and_scan_data(source)
    one = load_dataset(structures, "gap_scan", labels=scan, progress=False)
    missing = [None] * 12
    masked = load_dataset(structures, ["gap_pbe", "gap_hse", "gap_scan"],
                          labels={"gap_pbe": missing, "gap_hse": missing, "gap_scan": scan}, require="any",
                          progress=False).with_targets(["gap_pbe", "gap_hse", "gap_scan"])
    kw = dict(policy="fidelity:SCAN", renormalize=False, epochs=4, lr=3e-2, batch_size=4, progress=False, seed=0)
    from_one = grown.finetune(one.subset(range(8)), one.subset(range(8, 12)), **kw)
    from_masked = grown.finetune(masked.subset(range(8)), masked.subset(range(8, 12)), **kw)
    for a, b in zip(from_one.state_dict().values(), from_masked.state_dict().values()):
        assert torch.equal(a, b)
    before = np.stack([grown.predict_structure(s, check_domain=False).numpy() for s in structures])
    after = np.stack([from_one.predict_structure(s, check_domain=False).numpy() for s in structures])
    assert np.array_equal(after[:, :2], before[:, :2])  # PBE and HSE bit for bit
    y = np.asarray(scan[:8])
    assert np.abs(after[:8, 2] - y).mean() < np.abs(before[:8, 2] - y).mean()  # SCAN learned its labels
    assert from_one.metadata["finetune"]["targets"] == ["gap_pbe", "gap_hse", "gap_scan"]


def test_several_output_models_are_scored_on_the_output_of_the_target(source):
    from matgl_cgat.workflows import evaluate, output_column

    grown, structures, scan = _grown_and_scan_data(source)
    assert output_column(grown, "gap_scan") == 2 and output_column(grown, "HSE") == 1
    with pytest.raises(ValueError, match=r"several outputs \(pbe \(gap_pbe\), hse \(gap_hse\), scan \(gap_scan\)\); "
                                         r"none of them is 'gap_gllbsc'"):
        output_column(grown, "gap_gllbsc")
    data = load_dataset(structures, "gap_scan", labels=scan, progress=False)
    metrics = evaluate(grown, data, "gap_scan")
    expected = np.mean([abs(float(grown.predict_structure(s, fidelity="scan", check_domain=False)) - y)
                        for s, y in zip(structures, scan)])
    assert metrics["mae"] == pytest.approx(expected, rel=1e-4)
    multi = make_model(ntargets=2)
    multi.metadata = {"property": ["e_form", "gap"]}
    assert output_column(multi, "gap") == 1
    with pytest.raises(ValueError, match="none of them is 'e_hull'"):
        output_column(multi, "e_hull")


def test_one_label_data_must_be_the_named_fidelitys_label(source):
    grown, structures, scan = _grown_and_scan_data(source)
    scan_data = load_dataset(structures, "gap_scan", labels=scan, progress=False)
    with pytest.raises(ValueError, match=r"trains fidelity 'hse', whose labels are 'gap_hse'; the data's label is "
                                         r"'gap_scan'"):
        grown.finetune(scan_data, None, policy="fidelity:hse", renormalize=False, epochs=1, progress=False)
    other_val = load_dataset(structures, "scan_gap", labels=scan, progress=False)
    with pytest.raises(ValueError, match=r"the validation data's \['scan_gap'\]"):
        grown.finetune(scan_data, other_val, policy="fidelity:scan", renormalize=False, epochs=1, progress=False)


def test_cli_finetune_adds_a_fidelity_without_changing_the_others(source, tmp_path, capsys):
    import json

    import matgl

    from matgl_cgat.cli import main

    grown, structures, scan = _grown_and_scan_data(source)
    mf = multi_fidelity_from(source, {"pbe": (1.0, 2.0), "hse": (2.0, 3.0)}, label_columns={"pbe": "gap_pbe",
                                                                                           "hse": "gap_hse"})
    mf.metadata.update(units="eV", property="band gap")
    mf.save(tmp_path / "mf")
    data = tmp_path / "scan.jsonl"
    data.write_text("".join(json.dumps({"mat_id": f"s{i}", "structure": s.as_dict(), "gap_scan": y}) + "\n"
                            for i, (s, y) in enumerate(zip(structures, scan))))
    common = ["finetune", "--model", str(tmp_path / "mf"), "--data", str(data), "--target", "gap_scan",
              "--cache", str(tmp_path / "cache"), "--batch-size", "4", "--epochs", "2", "--lr", "0.03"]
    assert main([*common, "--add-fidelity", "scan", "--start-from", "hse", "--out", str(tmp_path / "out")]) == 0
    tuned = matgl.load_model(str(tmp_path / "out" / "model"))
    assert tuned.fidelities == ("pbe", "hse", "scan")
    card = tuned.metadata
    assert card["policy"] == "fidelity:scan" and card["label_columns"]["scan"] == "gap_scan" and card["units"] == "eV"
    assert card["property"] == "band gap"  # still the source's property, now at one more fidelity
    assert card["trained_label"] == "gap_scan" and card["training"]["trainable_parameters"] == 2 * tuned.readout.out_dim
    for s in structures[:3]:
        old = mf.predict_structure(s, check_domain=False)
        assert torch.equal(tuned.predict_structure(s, check_domain=False)[:2], old)
    metrics = json.loads((tmp_path / "out" / "test_metrics.json").read_text())
    assert metrics["n"] >= 1 and metrics["target"] == "gap_scan"
    capsys.readouterr()
    refused = {
        "--start-from goes with --add-fidelity": ["--start-from", "hse"],
        "--policy full cannot go with it": ["--add-fidelity", "scan", "--policy", "full"],
        r"unknown fidelity 'gw'; this model knows \['pbe', 'hse'\]": ["--add-fidelity", "scan", "--start-from", "gw"],
        "single is not a multi-fidelity model": ["--add-fidelity", "scan", "--model", str(tmp_path / "single")],
    }
    source.save(tmp_path / "single")
    for message, extra in refused.items():
        assert main([*common, *extra, "--out", str(tmp_path / "refused")]) == 2
        assert re.search(message, capsys.readouterr().err), message
    assert not (tmp_path / "refused").exists()
