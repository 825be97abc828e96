"""Freeze policies, the cyclic schedule and finetune(): each does exactly what it says."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from matgl_cgat import CGAT
from matgl_cgat.data import load_dataset
from matgl_cgat.transfer import (
    apply_policy,
    layerwise_param_groups,
    model_blocks,
    trainable_blocks,
    unfreeze_next,
)

from .conftest import make_model, random_structure

POLICY_BLOCKS = {
    "full": ["embeddings", "mp.0", "mp.1", "readout", "head"],
    "head": ["head"],
    "readout+head": ["readout", "head"],
    "last:1": ["mp.1", "readout", "head"],
    "last:0": ["readout", "head"],
    "frozen-embeddings": ["mp.0", "mp.1", "readout", "head"],
}
PREFIXES = {"embeddings": ("embedding.", "edge_embedding."), "mp.0": ("blocks.0.",), "mp.1": ("blocks.1.",),
            "readout": ("context.", "readout."), "head": ("head.",)}


@pytest.mark.parametrize("policy", sorted(POLICY_BLOCKS))
def test_cgat_policy_freezes_exactly_its_blocks(policy):
    model = make_model().train()
    report = apply_policy(model, policy)
    expected = tuple(p for b in POLICY_BLOCKS[policy] for p in PREFIXES[b])
    for name, p in model.named_parameters():
        assert p.requires_grad == name.startswith(expected), name
    total = sum(p.numel() for p in model.parameters())
    assert report.trainable + report.frozen == total
    assert report.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert {r[0] for r in report.rows} == set(PREFIXES)
    assert "trainable" in str(report)
    # frozen blocks are in eval mode, trained ones in train mode
    blocks = model_blocks(model)
    for name, modules in blocks.items():
        assert all(m.training == (name in POLICY_BLOCKS[policy]) for m in modules), name


def test_bad_policies_are_refused():
    blocks = ["embeddings", "mp.0", "mp.1", "readout", "head"]
    with pytest.raises(ValueError, match="unknown freeze policy"):
        trainable_blocks(blocks, "everything")
    with pytest.raises(ValueError, match="0..2"):
        trainable_blocks(blocks, "last:3")


@pytest.mark.parametrize("kind", ["m3gnet", "megnet"])
def test_policies_apply_to_matgl_models(kind):
    from matgl.models import M3GNet, MEGNet

    model = M3GNet(element_types=("Na", "Cl"), is_intensive=True, readout_type="set2set", nblocks=2) \
        if kind == "m3gnet" else MEGNet(element_types=("Na", "Cl"), nblocks=2)
    head = model.final_layer if kind == "m3gnet" else model.output_proj
    report = apply_policy(model, "head")
    assert report.trainable == sum(p.numel() for p in head.parameters()) > 0
    assert all(p.requires_grad == any(p is q for q in head.parameters()) for p in model.parameters())
    report = apply_policy(model, "last:1")
    assert [r[0] for r in report.rows if r[1] > 0] == ["mp.1", "readout", "head"]
    assert [r[0] for r in report.rows if r[2] > 0] == ["embeddings", "mp.0"]
    assert report.trainable + report.frozen == sum(p.numel() for p in model.parameters())


def test_layerwise_decay_and_gradual_unfreezing():
    model = make_model()
    groups = layerwise_param_groups(model, lr=1.0, decay=0.5)
    assert [g["name"] for g in groups] == ["head", "readout", "mp.1", "mp.0", "embeddings"]
    assert [g["lr"] for g in groups] == [1.0, 0.5, 0.25, 0.125, 0.0625]
    apply_policy(model, "head")
    assert unfreeze_next(model) == "readout"
    assert unfreeze_next(model) == "mp.1"
    assert all(p.requires_grad for p in model.blocks[1].parameters())
    assert not any(p.requires_grad for p in model.blocks[0].parameters())


def triangular_multiplier(epoch: int, period: int, low: float = 0.1) -> float:
    """The reference's triangular cycle, written out: low -> 1 -> low over `period` epochs."""
    phase = (epoch % period) / period
    return low + (1.0 - low) * (1.0 - abs(2.0 * phase - 1.0))


def _data(n: int, seed: int, scale: float = 1.0):
    structures = [random_structure(seed * 100 + i, n=3 + i % 3, elements=("O", "Mg", "Zn")) for i in range(n)]
    labels = [scale * (1.0 + 3.0 * s.composition.get_atomic_fraction("O")) for s in structures]
    return load_dataset(structures, "y", labels=labels, progress=False)


def test_finetune_returns_new_model_and_logs(tmp_path):
    source = make_model()
    source.set_normalization(2.0, 1.0)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    train, val = _data(24, 0), _data(8, 1)
    tuned = source.finetune(train, val, policy="head", epochs=4, lr=3e-3, period=4, batch_size=8,
                            out_dir=tmp_path / "run", progress=False)
    assert isinstance(tuned, CGAT) and tuned is not source
    for k, v in source.state_dict().items():  # source untouched
        assert torch.equal(v, before[k]), k
    changed = {k for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("head.", "data_")) for k in changed)
    assert all(p.requires_grad for p in tuned.parameters()) and not tuned.training
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    epochs = {int(r["epoch"]) for r in rows if r.get("val_mae")}
    assert epochs == {0, 1, 2, 3}
    lrs = [float(r["lr"]) for r in rows if r.get("lr")]
    assert lrs[0] == pytest.approx(3e-3 * 0.1) and max(lrs) == pytest.approx(3e-3 * triangular_multiplier(2, 4))
    record = tuned.metadata["finetune"]
    best_val = min(float(r["val_mae"]) for r in rows if r.get("val_mae"))
    assert record["best_val_mae"] == pytest.approx(best_val) and record["policy"] == "head"
    # returned weights are the best epoch's: its validation MAE is reproduced
    val_pred = torch.stack([tuned(val[i][0]) for i in range(len(val))]).detach().numpy()
    assert np.abs(val_pred - val.labels["y"]).mean() == pytest.approx(best_val, rel=1e-4)


def test_renormalize_is_explicit():
    source = make_model()
    source.set_normalization(0.0, 1.0)
    train = _data(16, 2, scale=10.0)
    kw = {"epochs": 1, "batch_size": 8, "progress": False}
    refit = source.finetune(train, policy="head", renormalize=True, **kw)
    kept = source.finetune(train, policy="head", renormalize=False, **kw)
    y = train.labels["y"]
    assert refit.data_mean.item() == pytest.approx(y.mean(), rel=1e-5)
    assert refit.data_std.item() == pytest.approx(y.std(), rel=1e-5)
    assert kept.data_mean.item() == 0.0 and kept.data_std.item() == 1.0


def test_finetune_resumes_after_interruption(tmp_path):
    source = make_model()
    train, val = _data(16, 3), _data(6, 4)
    kw = {"policy": "full", "lr": 1e-3, "period": 4, "batch_size": 8, "out_dir": tmp_path / "run", "progress": False}
    first = source.finetune(train, val, epochs=2, **kw)
    assert first.metadata["finetune"]["resumed_from_epoch"] == 0
    early = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    tuned = source.finetune(train, val, epochs=4, **kw)  # continues at epoch 2 from last.ckpt
    assert tuned.metadata["finetune"]["resumed_from_epoch"] == 2
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert rows[:2] == early
    assert sorted({int(r["epoch"]) for r in rows if r.get("val_mae")}) == [0, 1, 2, 3]
    assert tuned.metadata["finetune"]["best_epoch"] in range(4)
    again = source.finetune(train, val, epochs=4, **kw)  # finished run: nothing to train, same best weights
    assert again.metadata["finetune"]["resumed_from_epoch"] == 4
    assert again.metadata["finetune"]["best_val_mae"] == tuned.metadata["finetune"]["best_val_mae"]
    for k, v in tuned.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    assert list(csv.DictReader(open(tmp_path / "run" / "metrics.csv"))) == rows


def test_weight_averaging_is_the_mean_of_the_last_epochs_and_survives_interruption(tmp_path, monkeypatch):
    from matgl_cgat.training._callbacks import WeightAveraging

    seen: dict[int, dict[str, torch.Tensor]] = {}
    add = WeightAveraging._add
    crash = {"at": 3}

    def spy(self, trainer, module):
        epoch = trainer.current_epoch
        if epoch == crash["at"]:
            raise RuntimeError("simulated interruption")
        if epoch not in self.epochs:
            seen[epoch] = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
        add(self, trainer, module)

    monkeypatch.setattr(WeightAveraging, "_add", spy)
    source = make_model()
    train, val = _data(16, 9), _data(6, 10)
    kw = {"epochs": 4, "average_last": 2, "lr": 3e-3, "period": 4, "batch_size": 8,
          "out_dir": tmp_path / "run", "progress": False}
    with pytest.raises(RuntimeError, match="simulated interruption"):
        source.finetune(train, val, **kw)  # dies at the end of epoch 3: last.ckpt is epoch 2's
    assert sorted(seen) == [0, 1, 2]  # the spy sees every epoch; the average starts at epoch 2
    crash["at"] = None
    tuned = source.finetune(train, val, **kw)
    assert tuned.metadata["finetune"]["resumed_from_epoch"] == 3
    avg = tuned.metadata["finetune"]["weight_average"]
    assert avg["epochs"] == [2, 3]
    # the epoch-2 weights come back from the checkpoint: the result is the mean of epochs 2 and 3
    for k, v in tuned.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (seen[2][k] + seen[3][k]) / 2, msg=k)
    assert any(not torch.equal(seen[2][k], seen[3][k]) for k in seen[2])  # the two epochs did differ
    val_pred = torch.stack([tuned(val[i][0]) for i in range(len(val))]).detach().numpy()
    assert avg["val_mae"] == pytest.approx(np.abs(val_pred - val.labels["y"]).mean(), rel=1e-4)
    again = source.finetune(train, val, **kw)  # finished run: the averaged weights come from last.ckpt
    for k, v in tuned.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    with pytest.raises(ValueError, match="average_last=5: must be between 1 and epochs"):
        source.finetune(train, val, epochs=4, average_last=5, progress=False)


def test_resuming_with_other_settings_is_refused_and_overwrite_starts_afresh(tmp_path):
    from matgl_cgat.training import RunFolderMismatch

    source = make_model()
    train, val = _data(16, 11), _data(6, 12)
    kw = {"lr": 1e-3, "period": 4, "batch_size": 8, "out_dir": tmp_path / "run", "progress": False}
    source.finetune(train, val, epochs=2, **kw)  # epochs 0-1 without averaging
    with pytest.raises(RunFolderMismatch, match=r"config.average_last: None in the folder, 3 now"):
        source.finetune(train, val, epochs=4, average_last=3, **kw)
    with pytest.raises(RunFolderMismatch, match=r"policy: 'full' in the folder, 'head' now"):
        source.finetune(train, val, epochs=2, policy="head", **kw)
    with pytest.raises(RunFolderMismatch, match=r"data.train.graphs"):
        source.finetune(_data(16, 13), val, epochs=2, **kw)
    with pytest.raises(RunFolderMismatch, match=r"model.start_weights"):
        make_model(seed=5).finetune(train, val, epochs=2, **kw)
    tuned = source.finetune(train, val, epochs=4, average_last=3, overwrite=True, **kw)
    assert tuned.metadata["finetune"]["weight_average"]["epochs"] == [1, 2, 3]
    assert tuned.metadata["finetune"]["resumed_from_epoch"] == 0


def test_finetune_accepts_structures_and_labels_and_gradual_unfreezing(tmp_path):
    source = make_model()
    structures = [random_structure(i, n=4) for i in range(12)]
    labels = [float(i % 3) for i in range(12)]
    tuned = source.finetune((structures, labels), policy="head", gradual_unfreeze_every=1, epochs=3,
                            layerwise_lr_decay=0.5, batch_size=6, progress=False)
    assert [name for _, name in tuned.metadata["finetune"]["unfrozen"]] == ["readout", "mp.1"]


@pytest.mark.parametrize("policy", sorted(POLICY_BLOCKS))
def test_finetune_changes_only_what_the_policy_trains(policy):
    source = make_model()
    train = _data(12, 5)
    tuned = source.finetune(train, policy=policy, renormalize=False, epochs=1, lr=1e-2, batch_size=6, progress=False)
    expected = tuple(p for b in POLICY_BLOCKS[policy] for p in PREFIXES[b])
    src = dict(source.named_parameters())
    for name, p in tuned.named_parameters():
        if name.startswith(expected):
            continue
        assert torch.equal(p, src[name]), f"{policy}: frozen parameter {name} changed"
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, src[n])]
    assert changed and all(n.startswith(expected) for n in changed)


def test_losses_are_what_their_names_say():
    from matgl_cgat.training import point_loss

    pred, target = torch.tensor([0.0, 0.5, 3.0]), torch.tensor([0.0, 0.0, 0.0])
    assert float(point_loss("l1", pred, target, 1.0).mean()) == pytest.approx((0.5 + 3.0) / 3)
    assert float(point_loss("mse", pred, target, 1.0).mean()) == pytest.approx((0.25 + 9.0) / 3)
    # Huber: quadratic inside delta, linear outside
    assert float(point_loss("huber", pred, target, 1.0).mean()) == pytest.approx((0.125 + 2.5) / 3)
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        make_model().finetune(_data(4, 0), loss="l2", epochs=1, progress=False)


@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_finetune_with_other_losses_records_them_and_learns(loss, tmp_path):
    """A pile of zeros plus a signal: the non-L1 losses still fit it, and the card says which loss ran."""
    source = make_model()
    train = _data(24, 6)
    tuned = source.finetune(train, train, loss=loss, epochs=4, lr=3e-3, period=4, batch_size=8,
                            out_dir=tmp_path / "run", progress=False)
    record = tuned.metadata["finetune"]
    assert record["loss"] == loss and (record.get("huber_delta") == 1.0) == (loss == "huber")
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    maes = [float(r["val_mae"]) for r in rows]
    assert min(maes[1:]) < maes[0]


def test_output_bound_is_kept_only_where_the_new_labels_respect_it():
    source = make_model()
    source.set_output_min(0.0)
    kw = {"epochs": 1, "batch_size": 8, "progress": False, "policy": "head"}
    positive = _data(8, 7)  # labels 1..4
    assert source.finetune(positive, **kw).output_min == 0.0
    negative = _data(8, 7, scale=-1.0)
    with pytest.warns(UserWarning, match="below the source model's output bound 0.0"):
        tuned = source.finetune(negative, **kw)
    assert tuned.output_min is None and tuned.metadata["finetune"]["output_min"] is None
    assert source.output_min == 0.0  # the source is untouched
    assert source.finetune(negative, output_min=-10.0, **kw).output_min == -10.0


def test_calibrate_offset_minimises_held_out_mae():
    from matgl_cgat.transfer import calibrate_offset

    data = _data(13, 8)  # odd: the median residual is unique
    y = data.labels["y"]
    model = make_model()
    model.set_normalization(float(y.mean()) + 0.7, 1.0)  # predictions biased upwards
    before = model.predict_dataset(data)
    report = calibrate_offset(model, data)
    after = model.predict_dataset(data)
    # unbounded: the best constant shift is the median residual, and every prediction moves by it
    assert report["shift"] == pytest.approx(float(np.median(before - y)), abs=1e-6)
    np.testing.assert_allclose(after, before - report["shift"], atol=1e-5)
    assert report["mae_after"] == pytest.approx(np.abs(after - y).mean(), rel=1e-5)
    assert report["mae_after"] < report["mae_before"] == pytest.approx(np.abs(before - y).mean(), rel=1e-5)

    bounded = make_model()
    bounded.set_normalization(float(y.mean()), 1.0)
    raw = bounded.predict_dataset(data)
    bounded.set_output_min(2.0)  # the bound is applied when the shift is chosen, and kept
    rep = calibrate_offset(bounded, data)
    assert bounded.output_min == 2.0
    got = bounded.predict_dataset(data)
    np.testing.assert_allclose(got, np.maximum(raw - rep["shift"], 2.0), atol=1e-5)
    assert rep["mae_after"] <= rep["mae_before"] + 1e-12
    with pytest.raises(ValueError, match="single-target"):
        calibrate_offset(make_model(ntargets=2), data)
