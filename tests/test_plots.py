"""Each plot is a real PNG, written atomically (no temporary file left behind)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from matgl_cgat.plots import plot_budget, plot_parity, plot_scaling, plot_training_curve

PNG_MAGIC = b"\x89PNG"


def assert_png(out, expected):
    """``out`` is ``expected``, holds a PNG and is the only file in its folder."""
    assert out == expected
    assert out.read_bytes()[:4] == PNG_MAGIC
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def write_csv(path, text):
    path.write_text(text)
    return path


def test_training_curve_with_blank_val_columns(tmp_path):
    csv = write_csv(tmp_path / "metrics.csv", "epoch,lr,train_loss,train_mae,val_loss,val_mae\n"
                                               "0,0.001,1.0,0.90,,\n"
                                               "1,0.002,0.8,0.70,0.85,0.75\n"
                                               "2,0.001,0.6,0.55,,\n"
                                               "3,0.0005,0.5,0.50,0.60,0.58\n")
    out = plot_training_curve(csv, tmp_path / "plots" / "curve.png", title="run 1")
    assert out.read_bytes()[:4] == PNG_MAGIC
    assert sorted(p.name for p in out.parent.iterdir()) == ["curve.png"]


def test_training_curve_without_lr_column(tmp_path):
    csv = write_csv(tmp_path / "m.csv", "epoch,train_mae,val_mae\n0,0.9,\n1,0.7,0.8\n")
    out_dir = tmp_path / "out"
    assert_png(plot_training_curve(csv, out_dir / "c.png"), out_dir / "c.png")


def test_training_curve_rejects_bad_csv(tmp_path):
    no_mae = write_csv(tmp_path / "no_mae.csv", "epoch,lr,train_loss\n0,0.001,1.0\n")
    with pytest.raises(ValueError, match=r"no_mae\.csv.*train_mae"):
        plot_training_curve(no_mae, tmp_path / "a.png")
    no_rows = write_csv(tmp_path / "no_rows.csv", "epoch,lr,train_loss,train_mae,val_loss,val_mae\n")
    with pytest.raises(ValueError, match=r"no_rows\.csv.*no rows"):
        plot_training_curve(no_rows, tmp_path / "b.png")
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_scaling_with_seeds_and_fits(tmp_path):
    rows = [{"size": n, "strategy": s, "test_mae": a * n**-b * (1 + 0.05 * seed), "seed": seed}
            for s, a, b in (("full", 2.0, 0.3), ("no transfer", 3.0, 0.25))
            for n in (100, 300, 1000, 3000) for seed in range(3)]
    fits = {"full": SimpleNamespace(a=2.0, b=0.3), "no transfer": SimpleNamespace(a=3.0, b=0.25)}
    out_dir = tmp_path / "scaling"
    assert_png(plot_scaling(rows, out_dir / "s.png", fits=fits, title="scaling"), out_dir / "s.png")
    single = tmp_path / "single"
    assert_png(plot_scaling(rows[:1], single / "one.png"), single / "one.png")  # one point, one seed, no fit


def test_scaling_rejects_nonpositive(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        plot_scaling([{"size": 100, "strategy": "full", "test_mae": 0.0}], tmp_path / "s.png")


def test_parity(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 5, 300)
    out_dir = tmp_path / "parity"
    out = plot_parity(y, y + rng.normal(0, 0.2, y.size), out_dir / "p.png", title="band gap", units="eV")
    assert_png(out, out_dir / "p.png")
    const = tmp_path / "const"
    assert_png(plot_parity([1.0, 1.0], [1.0, 1.0], const / "p.png"), const / "p.png")  # degenerate range


def test_budget(tmp_path):
    rows = [{"budget": b, "mae_cheap": 0.5 * (1 + b) ** -0.2, "mae_expensive": 0.5 * (1 + 4 * b) ** -0.1}
            for b in (1000, 10, 100)]
    out_dir = tmp_path / "budget"
    assert_png(plot_budget(rows, out_dir / "b.png", title="plan"), out_dir / "b.png")
    zero = tmp_path / "zero"
    assert_png(plot_budget(rows + [{"budget": 0, "mae_cheap": 0.5, "mae_expensive": 0.5}], zero / "b.png"),
               zero / "b.png")  # linear x axis when a budget is 0
