"""``mgl-cgat train | finetune | evaluate | scaling fit | plan`` end to end on data the test writes itself."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from matgl_cgat.cli import main

from .conftest import random_structure


@pytest.fixture
def data_file(tmp_path):
    """40 small crystals with a label that depends on composition, as JSON lines."""
    path = tmp_path / "toy.jsonl"
    with open(path, "w") as f:
        for i in range(40):
            s = random_structure(i, n=3 + i % 3, elements=("O", "Mg", "Zn"))
            y = 1.0 + 3.0 * s.composition.get_atomic_fraction("O")
            f.write(json.dumps({"mat_id": f"toy-{i}", "structure": s.as_dict(), "y": y}) + "\n")
    return path


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_finetune_evaluate(tmp_path, data_file, capsys):
    cache = str(tmp_path / "cache")
    out = tmp_path / "trained"
    common = ["--data", str(data_file), "--target", "y", "--cache", cache, "--batch-size", "8"]
    assert main(["train", *common, "--epochs", "2", "--units", "eV", "--out", str(out)]) == 0
    for name in ("model/model.json", "run/metrics.csv", "test_metrics.json", "test_predictions.csv",
                 "training_curve.png", "parity.png"):
        assert (out / name).is_file(), name
    assert (out / "parity.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "random 0.8/0.1/0.1 split, seed 0: train 32, val 4, test 4" in printed
    # the run ends with its best epoch and the test metrics, with units, and the model's name and property
    assert "best epoch: " in printed and "(validation MAE " in printed and " eV), the weights saved" in printed
    assert "test: n 4, mae " in printed and " eV, rmse " in printed and "saved the model trained-y (y, eV)" in printed
    metrics = json.loads((out / "test_metrics.json").read_text())
    rows = _csv(out / "test_predictions.csv")
    assert len(rows) == 4 == metrics["n"]
    mae = np.mean([abs(float(r["y_true"]) - float(r["y_pred"])) for r in rows])
    assert metrics["mae"] == pytest.approx(mae, rel=1e-4)
    card = json.loads((out / "model" / "model.json").read_text())["metadata"]
    assert card["test_mae"] == pytest.approx(metrics["mae"]) and card["units"] == "eV" and card["n_train"] == 32
    assert card["policy"] == "full" and card["training"]["epochs"] == 2

    tuned = tmp_path / "tuned"
    assert main(["finetune", "--model", str(out / "model"), *common, "--policy", "head", "--epochs", "1",
                 "--max-train", "10", "--out", str(tuned)]) == 0
    card2 = json.loads((tuned / "model" / "model.json").read_text())["metadata"]
    assert card2["parent"] == "trained-y" and card2["name"] == "tuned-y"  # named after run and property
    assert card2["policy"] == "head" and card2["n_train"] == 10
    assert card2["training"]["trainable_parameters"] < card2["training"]["frozen_parameters"]
    assert card2["units"] == "eV"  # inherited from the source model

    capsys.readouterr()
    assert main(["evaluate", "--model", str(tuned / "model"), *common, "--out", str(tmp_path / "ev")]) == 0
    out_text = capsys.readouterr().out
    printed = json.loads(out_text[out_text.index("{"):out_text.index("\nwrote")])
    assert printed["mae"] == pytest.approx(card2["test_mae"], rel=1e-5)
    assert json.loads((tmp_path / "ev" / "test_metrics.json").read_text())["rmse"] >= printed["mae"] - 1e-12


def test_train_uses_a_splits_file(tmp_path, data_file, capsys):
    ids = [f"toy-{i}" for i in range(40)]
    splits = tmp_path / "my_splits.json"
    splits.write_text(json.dumps({"y": {"train": ids[:20], "val": ids[20:25], "test": ids[25:]}}))
    assert main(["train", "--data", str(data_file), "--target", "y", "--splits", str(splits), "--epochs", "1",
                 "--cache", str(tmp_path / "c"), "--loss", "huber", "--output-min", "0", "--calibrate-offset",
                 "--average-last", "1", "--out", str(tmp_path / "o")]) == 0
    assert "my_splits.json['y']: train 20, val 5, test 15" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "test_metrics.json").read_text())["n"] == 15
    card = json.loads((tmp_path / "o" / "model" / "model.json").read_text())
    assert card["metadata"]["training"]["loss"] == "huber" and card["metadata"]["training"]["huber_delta"] == 1.0
    assert card["metadata"]["output_min"] == 0.0 and card["kwargs"]["output_min"] == 0.0
    assert card["metadata"]["training"]["weight_average"]["epochs"] == [0]
    calibration = card["metadata"]["offset_calibration"]
    assert calibration["n"] == 5 and calibration["mae_after"] <= calibration["mae_before"]
    # the shift is folded into the saved mean: the saved model reproduces the calibrated validation MAE
    from matgl_cgat.data import load_dataset, split_from_file
    from matgl_cgat.models import CGAT

    model = CGAT.load(tmp_path / "o" / "model")
    val = split_from_file(load_dataset(data_file, "y", cache_dir=tmp_path / "c", progress=False), splits, "y")["val"]
    mae = np.abs(model.predict_dataset(val) - val.labels["y"]).mean()
    assert mae == pytest.approx(calibration["mae_after"], rel=1e-4)


def test_data_folder_with_one_jsonl_file_and_its_splits(tmp_path, data_file, capsys):
    """``--data mp_gap/`` style: the folder's one JSON-lines file and the splits.json beside it."""
    ids = [f"toy-{i}" for i in range(40)]
    (tmp_path / "splits.json").write_text(json.dumps({"y": {"train": ids[:30], "val": ids[30:34], "test": ids[34:]}}))
    assert main(["train", "--data", str(tmp_path), "--target", "y", "--epochs", "1", "--cache", str(tmp_path / "c"),
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert f"{data_file}: y, splits.json['y']: train 30, val 4, test 6" in out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope.jsonl"), "--target", "y", "--out", str(tmp_path / "o")]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nope.jsonl"), "--target", "y", "--output-min", "zero",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--output-min must be a number, 'none' or 'auto', got 'zero'" in capsys.readouterr().err
    assert main(["plan", "--n-train", "100", "--cost-ratio", "5"]) == 2
    assert "--train-results" in capsys.readouterr().err
    assert main(["scaling", "fit", str(tmp_path / "missing")]) == 2
    assert "no learning-curve results" in capsys.readouterr().err


def test_scaling_fit_and_plan_from_results(tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    rows = []
    for size in (100, 300, 1000, 3000):
        for seed in (0, 1):
            rows.append({"target": "gap_x", "size": size, "strategy": "scratch", "seed": seed,
                         "test_mae": 2.0 * size**-0.3 * (1 + 0.01 * seed)})
            rows.append({"target": "gap_x", "size": size, "strategy": "full", "seed": seed,
                         "test_mae": 1.0 * size**-0.3 * (1 + 0.01 * seed)})
    with open(study / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["scaling", "fit", str(study / "results.csv"), "--target-mae", "0.2"]) == 0
    fits = json.loads((study / "fits.json").read_text())
    assert fits["fits"]["full"]["b"] == pytest.approx(0.3, abs=1e-3)
    eq = fits["data_equivalent"]["full"]
    assert eq["size"] == 3000 and eq["scratch_needs"] == pytest.approx(3000 * 2 ** (1 / 0.3), rel=0.02)
    assert (study / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "no transfer needs" in capsys.readouterr().out

    assert main(["plan", "--train-results", str(study), "--train-strategy", "full", "--pretrain-fit", "1.5", "0.3",
                 "--n-train", "1000", "--n-pretrain", "10000", "--cost-ratio", "5", "--budgets", "0", "5000",
                 "--out", str(tmp_path / "plan")]) == 0
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    row = plan["rows"][1]
    assert row["extra_expensive"] == 1000
    assert row["mae_expensive"] == pytest.approx(2000**-0.3, rel=0.02)
    assert row["mae_cheap"] == pytest.approx(1.5 * 15000**-0.3)
    assert (tmp_path / "plan" / "plan.png").is_file()


def test_a_run_folder_refuses_another_target_and_overwrite_starts_afresh(tmp_path, capsys):
    """The issue's case: fine-tuning for gap_gllbsc into a folder holding a finished gap_hse run."""
    path = tmp_path / "two.jsonl"
    with open(path, "w") as f:
        for i in range(30):
            s = random_structure(i, n=3 + i % 3, elements=("O", "Mg", "Zn"))
            x = s.composition.get_atomic_fraction("O")
            f.write(json.dumps({"mat_id": f"t-{i}", "structure": s.as_dict(), "gap_hse": 1 + x, "gap_gllbsc": 2 + x})
                    + "\n")
    common = ["--data", str(path), "--cache", str(tmp_path / "c"), "--batch-size", "8", "--epochs", "1"]
    out = tmp_path / "run"
    assert main(["train", *common, "--target", "gap_hse", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", *common, "--target", "gap_gllbsc", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a run started differently" in err and "targets" in err and "gap_hse" in err and "gap_gllbsc" in err
    assert json.loads((out / "model" / "model.json").read_text())["metadata"]["property"] == "gap_hse"  # untouched
    assert main(["train", *common, "--target", "gap_gllbsc", "--lr", "1e-4", "--overwrite", "--out", str(out)]) == 0
    card = json.loads((out / "model" / "model.json").read_text())["metadata"]
    assert card["property"] == "gap_gllbsc" and card["training"]["lr"] == 1e-4
    assert main(["train", *common, "--target", "gap_gllbsc", "--out", str(out)]) == 2  # lr differs from the run's
    assert "config.lr: 0.0001 in the folder, 0.001 now" in capsys.readouterr().err


def test_training_history_continues_a_warm_restart_and_starts_afresh_otherwise():
    import copy

    from matgl_cgat.workflows import training_history

    stage = {"what": "a new cycle", "best_val_mae": 0.07, "test_mae": 0.068, "cpu_hours_measured": 1.25}
    # the card's total (6.0) is what counts, not the sum of the stages it lists (1.0 + 3.7)
    staged = {"name": "M", "cpu_hours": 6.0,
              "stages": [{"what": "scratch", "wall_minutes_2_threads": 30},
                         {"what": "cycle", "cpu_hours_measured": 3.7}]}
    before = copy.deepcopy(staged)
    h = training_history(staged, "M", stage)
    assert [s["stage"] for s in h["stages"]] == [1, 2, 3]
    assert h["stages"][2]["test_mae"] == 0.068 and h["cpu_hours"] == pytest.approx(7.25)
    assert staged == before  # the parent's card is not changed
    assert "parent_cpu_hours" not in h
    # without a total, the stages are summed (2 threads x 30 min for the first)
    h = training_history({k: v for k, v in staged.items() if k != "cpu_hours"}, "M", stage)
    assert h["cpu_hours"] == pytest.approx(1.0 + 3.7 + 1.25)

    # a card from before stages were recorded: stage 1 rebuilt from its record, 2 threads x its wall time
    old = {"name": "M", "training": {"epochs": 3, "lr": 1e-3}, "test_mae": 0.57, "train_seconds_this_invocation": 1800}
    h = training_history(old, "M", stage)
    assert [s["stage"] for s in h["stages"]] == [1, 2]
    assert h["stages"][0]["training"] == {"epochs": 3, "lr": 1e-3} and h["stages"][0]["test_mae"] == 0.57
    assert h["cpu_hours"] == pytest.approx(1.0 + 1.25)

    # another model's card (inter-property transfer): a history of its own, the parent's cost apart
    h = training_history(staged, "Other", stage)
    assert h == {"stages": [{"stage": 1, **stage}], "cpu_hours": 1.25, "parent_cpu_hours": 6.0}
    # no card (from scratch), metadata that is not a card, or a card that states no cost: no parent cost
    for parent in (None, "not a card", {"name": "Third"}):
        assert training_history(parent, "Other", stage) == {"stages": [{"stage": 1, **stage}], "cpu_hours": 1.25}
