"""matgl_cgat.training: config, multi-target masked loss, bf16, weights-only resume, kill -9, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from matgl_cgat.data import load_dataset
from matgl_cgat.training import (
    RECIPES,
    RunFolderMismatch,
    TrainConfig,
    collate_graphs,
    fit,
    load_checkpoint,
    recipe,
)
from matgl_cgat.training._module import TrainingModule

from .conftest import make_model, random_structure

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"


def _structures(n: int, seed: int = 0):
    return [random_structure(seed * 100 + i, n=3 + i % 3, elements=("O", "Mg", "Zn")) for i in range(n)]


def test_config_has_one_set_of_defaults_and_named_recipes():
    assert recipe("cpu") == TrainConfig()
    assert recipe("paper-transfer").lr == 1.25e-4 and recipe("paper-transfer").cycle == 70
    assert recipe("cpu", epochs=7).cycle == 7  # one cycle over the run unless a period is given
    assert set(RECIPES) >= {"cpu", "cpu-transfer", "paper-scratch", "paper-transfer"}
    with pytest.raises(TypeError, match=r"unknown training setting\(s\) \['learning_rate'\]"):
        TrainConfig().replace(learning_rate=1e-3)
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        TrainConfig(loss="l2")
    with pytest.raises(ValueError, match="unknown training recipe 'fast'"):
        recipe("fast")
    with pytest.raises(ValueError, match="precision 'fp8'"):
        TrainConfig(precision="fp8")
    assert TrainConfig.from_dict(TrainConfig(target_weights=(1, 2)).to_dict()) == TrainConfig(target_weights=(1, 2))


def _two_target_data(n: int, seed: int):
    """Target a (every structure) and b (only every third): b's missing labels are NaN."""
    structures = _structures(n, seed)
    a = [1.0 + 3.0 * s.composition.get_atomic_fraction("O") for s in structures]
    b = [2.0 * s.composition.get_atomic_fraction("Zn") if i % 3 == 0 else None for i, s in enumerate(structures)]
    ds = load_dataset(structures, ["a", "b"], labels={"a": a, "b": b}, require="any", progress=False)
    return ds.with_targets(["a", "b"])


def test_masked_multi_target_loss_counts_every_present_label():
    data = _two_target_data(9, 0)
    assert len(data) == 9 and data.returned_targets == ("a", "b")
    batch = collate_graphs([data[i] for i in range(len(data))], ("a", "b"))
    assert batch.labels.shape == (9, 2) and int(torch.isnan(batch.labels[:, 1]).sum()) == 6
    model = make_model(ntargets=2)
    model.set_normalization([2.0, 0.3], [1.0, 0.5])
    module = TrainingModule(model, TrainConfig(loss="mse"), ("a", "b"))
    loss, abs_err, counts, _ = module._errors(batch)
    with torch.no_grad():
        out = model.forward_normalized(batch.graph)[:, :2]
    target = (batch.labels - model.data_mean) / model.data_std
    present = ~torch.isnan(target)
    per_target = [((out[present[:, t], t] - target[present[:, t], t]) ** 2).mean() for t in range(2)]
    assert float(loss) == pytest.approx(float(sum(per_target) / 2), rel=1e-5)
    assert counts.tolist() == [9, 3]
    mae_b = ((out[present[:, 1], 1] - target[present[:, 1], 1]).abs() * 0.5).sum()
    assert float(abs_err[1]) == pytest.approx(float(mae_b), rel=1e-5)
    # a structure without b still moves the a-prediction: the gradient reaches the head from row 1 (b missing)
    only = collate_graphs([data[1]], ("a", "b"))
    loss_one, _, _, _ = module._errors(only)
    loss_one.backward()
    assert torch.isfinite(loss_one) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_multi_target_model_trains_on_both_and_logs_each(tmp_path):
    train, val = _two_target_data(24, 1), _two_target_data(9, 2)
    model = make_model(ntargets=2)
    model.set_normalization([2.0, 0.3], [1.0, 0.5])
    result = fit(model.train(), train, val, recipe("cpu", epochs=3, lr=3e-3, batch_size=6, progress=False),
                 out_dir=tmp_path / "run")
    last = result.history[-1]
    assert {"val_mae_a", "val_mae_b", "train_mae_a", "train_mae_b", "val_mae"} <= set(last)
    pred = model.predict_dataset(val)
    y = np.stack([val.labels["a"], val.labels["b"]], axis=1)
    maes = [np.nanmean(np.abs(pred[:, t] - y[:, t])) for t in range(2)]
    best = result.history[result.best_epoch]
    assert best["val_mae_a"] == pytest.approx(maes[0], rel=1e-4)
    assert best["val_mae_b"] == pytest.approx(maes[1], rel=1e-4)
    assert best["val_mae"] == pytest.approx((maes[0] / 1.0 + maes[1] / 0.5) / 2, rel=1e-4)
    assert result.record()["best_val_mae_per_target"] == {"a": best["val_mae_a"], "b": best["val_mae_b"]}
    with pytest.raises(ValueError, match=r"carries 2 target\(s\) \['a', 'b'\] but the model predicts 1"):
        fit(make_model(), train, val, recipe("cpu", epochs=1, progress=False))


def test_bf16_autocast_runs_through_the_custom_autograd_functions(tmp_path):
    model = make_model()
    data = load_dataset(_structures(12), "y", labels=[float(i % 4) for i in range(12)], progress=False)
    batch = collate_graphs([data[i] for i in range(12)], ("y",))
    model.train()
    reference = model.forward_normalized(batch.graph)
    with torch.autocast("cpu", torch.bfloat16):
        out = model.forward_normalized(batch.graph)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)  # bf16 keeps ~3 significant digits
    out.float().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    model.set_normalization(1.5, 1.1)
    result = fit(model, data, data, recipe("cpu", epochs=3, lr=3e-3, batch_size=4, precision="bf16-mixed",
                                           progress=False), out_dir=tmp_path / "bf16")
    assert result.history[-1]["train_mae"] < result.history[0]["train_mae"]


def test_checkpoints_are_read_weights_only(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "run" / "checkpoints" / "last.ckpt"
    bad.parent.mkdir(parents=True)
    torch.save({"epoch": 0, "state_dict": {}, "evil": Payload()}, bad)
    with pytest.raises(RunFolderMismatch, match="refusing to unpickle"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()
    # a folder with checkpoints but no run record is refused, not trusted
    data = load_dataset(_structures(6), "y", labels=[1.0] * 6, progress=False)
    with pytest.raises(RunFolderMismatch, match="no run.json"):
        fit(make_model(), data, None, recipe("cpu", epochs=1, progress=False), out_dir=tmp_path / "run")
    assert not (tmp_path / "pwned").exists()


def _run_script(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DGLBACKEND": "pytorch", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *extra], capture_output=True, text=True,
                          env=env, timeout=600)


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    whole = _run_script(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    reference = json.loads((tmp_path / "whole" / "rank0.json").read_text())
    for die_at in ("2:1", "1:5"):  # inside epoch 2; right after the last batch of epoch 1, before its checkpoint
        out = tmp_path / f"killed_{die_at.replace(':', '_')}"
        killed = _run_script(out, "--die-at", die_at)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert not (out / "rank0.json").exists()
        resumed = _run_script(out)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        summary = json.loads((out / "rank0.json").read_text())
        assert summary["resumed_from_epoch"] == int(die_at.split(":")[0])
        assert summary["weights"] == reference["weights"]  # bit for bit: the returned (best) weights
        assert summary["last_weights"] == reference["last_weights"]  # and the last epoch's
        assert summary["best_val_mae"] == reference["best_val_mae"]


def test_ddp_on_two_cpu_processes(tmp_path):
    from tests.scripts.train_tiny import tiny_data

    cache = tmp_path / "cache"
    _, val, _ = tiny_data(str(cache))  # both ranks then read this on-disk graph cache
    done = _run_script(tmp_path / "ddp", "--devices", "2", "--strategy", "ddp", "--cache", str(cache))
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # the same final weights on every rank
    assert ranks[0]["is_global_zero"] and not ranks[1]["is_global_zero"]
    first = [set(r["first_epoch_items"]) for r in ranks]
    assert not first[0] & first[1] and first[0] | first[1] == set(range(24))  # each rank its own half
    import matgl

    model = matgl.load_model(tmp_path / "ddp" / "model")  # one model, written by rank 0
    mae = float(np.abs(model.predict_dataset(val) - val.labels["y"]).mean())
    # validation reduced over both ranks (9 items: 5 + 4, no item counted twice)
    assert ranks[0]["best_val_mae"] == pytest.approx(mae, rel=1e-4) and len(val) == 9
    assert ranks[1]["test_metrics"] is None


def test_a_stop_file_ends_the_run_after_the_epoch_and_the_same_call_resumes(tmp_path):
    import lightning as pl

    class TouchStop(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                (tmp_path / "run" / "STOP").touch()

    data = load_dataset(_structures(12), "y", labels=[float(i % 4) for i in range(12)], progress=False)
    config = recipe("cpu", epochs=4, lr=3e-3, batch_size=4, progress=False)
    model = make_model()
    stopped = fit(model.train(), data, data, config, out_dir=tmp_path / "run", extra_callbacks=[TouchStop()])
    assert stopped.stopped_at_epoch == 1 and [r["epoch"] for r in stopped.history] == [0, 1]
    assert stopped.best_epoch in (0, 1) and (tmp_path / "run" / "STOP").exists()
    resumed = fit(make_model().train(), data, data, config, out_dir=tmp_path / "run")
    assert resumed.resumed_from_epoch == 2 and resumed.stopped_at_epoch is None
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3] and not (tmp_path / "run" / "STOP").exists()


def test_a_stop_before_the_averaging_window_returns_the_best_epoch(tmp_path):
    import lightning as pl

    class TouchStop(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            (tmp_path / "run" / "STOP").touch()

    data = load_dataset(_structures(12), "y", labels=[float(i % 4) for i in range(12)], progress=False)
    result = fit(make_model().train(), data, data, recipe("cpu", epochs=4, batch_size=4, average_last=2, progress=False),
                 out_dir=tmp_path / "run", extra_callbacks=[TouchStop()])
    assert result.stopped_at_epoch == 0 and result.weight_average is None and result.best_epoch == 0
