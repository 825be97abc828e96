"""Training with MatGL's own Lightning module and data loader, on generated and on real data."""

from __future__ import annotations

import lightning as pl
import numpy as np
import pytest
import torch
from matgl.graph.data import MGLDataLoader, collate_fn_graph
from matgl.utils.training import ModelLightningModule

from matgl_cgat import CGAT
from matgl_cgat.data import graph_dataset, load_dataset, split_from_file

from .conftest import TINY, random_structure


def _evaluate(model, loader) -> float:
    model.eval()
    errors = []
    with torch.no_grad():
        for g, _lat, _state, y in loader:
            errors.append((model(g).reshape(-1) - y.reshape(-1)).abs())
    return float(torch.cat(errors).mean())


def _fit(model, train, val, epochs, lr, batch_size=16):
    train_loader, val_loader = MGLDataLoader(
        train_data=train, val_data=val, batch_size=batch_size, collate_fn=collate_fn_graph,
        generator=torch.Generator().manual_seed(0),
    )
    model.train()  # Lightning 2.5 keeps the mode it is given
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-6)
    module = ModelLightningModule(model=model, loss="l1_loss", optimizer=optimizer,
                                  scheduler=torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_loader, val_loader)
    return val_loader


def test_matgl_lightning_module_trains_cgat_on_generated_data():
    """A learnable toy target (fraction of oxygen) through MGLDataset, MGLDataLoader, ModelLightningModule."""
    pl.seed_everything(0)
    structures = [random_structure(i, n=3 + i % 4, elements=("O", "Mg", "Zn", "O")[: 2 + i % 3]) for i in range(48)]
    labels = [4.0 * s.composition.get_atomic_fraction("O") for s in structures]
    model = CGAT(**TINY)
    model.set_normalization(float(np.mean(labels)), float(np.std(labels)))
    conv = model.graph_converter()
    train = graph_dataset(structures[:40], {"y": labels[:40]}, conv)
    val = graph_dataset(structures[40:], {"y": labels[40:]}, conv)
    _, val_loader = MGLDataLoader(train_data=train, val_data=val, batch_size=8, collate_fn=collate_fn_graph)
    before = _evaluate(model, val_loader)
    _fit(model, train, val, epochs=40, lr=3e-3, batch_size=8)
    after = _evaluate(model, val_loader)
    print(f"toy validation MAE {before:.3f} -> {after:.3f}")
    assert after < 0.5 * before, (before, after)


def test_short_training_on_shared_data_lowers_validation_error(shared_data, mp_gap_graphs):
    pl.seed_everything(0)
    full = mp_gap_graphs.with_targets(["e_form_pbe"])
    assert len(full) == 35592 and mp_gap_graphs.skipped == []
    parts = split_from_file(full, shared_data / "splits.json", "e_form_pbe")
    train, val = parts["train"].subset(range(600)), parts["val"].subset(range(150))
    model = CGAT.from_preset("small")
    y = train.labels["e_form_pbe"]
    model.set_normalization(float(y.mean()), float(y.std()))
    val_loader = _fit(model, train, val, epochs=0, lr=1e-3)
    before = _evaluate(model, val_loader)
    _fit(model, train, val, epochs=6, lr=1e-3, batch_size=32)
    after = _evaluate(model, val_loader)
    print(f"validation MAE {before:.3f} -> {after:.3f} eV/atom")
    assert after < 0.8 * before, (before, after)


def test_matgl_multi_fidelity_recipe_trains_a_multi_fidelity_cgat():
    """MatGL's own multi-fidelity example: the fidelity id is the graph state attribute
    (``MGLDataset(graph_labels=...)``), one label column, trained with ``ModelLightningModule``."""
    pl.seed_everything(0)
    structures = [random_structure(i, n=3 + i % 4, elements=("O", "Mg", "Zn", "O")[: 2 + i % 3]) for i in range(48)]
    fidelity = [i % 2 for i in range(48)]  # 0: "low", 1: "high" = low + 1.5
    labels = [4.0 * s.composition.get_atomic_fraction("O") + 1.5 * f for s, f in zip(structures, fidelity)]
    model = CGAT(**TINY, fidelities=("low", "high"), ntargets=2)
    model.set_normalization([1.5, 3.0], [1.0, 1.0])
    conv = model.graph_converter()
    train = graph_dataset(structures[:40], {"y": labels[:40]}, conv, graph_labels=fidelity[:40])
    val = graph_dataset(structures[40:], {"y": labels[40:]}, conv, graph_labels=fidelity[40:])
    _, val_loader = MGLDataLoader(train_data=train, val_data=val, batch_size=8, collate_fn=collate_fn_graph)
    g, _, state, y = next(iter(val_loader))
    out = model(g, state_attr=state)
    assert out.shape == y.shape  # one prediction per crystal, its own fidelity: MatGL's loss takes it
    both = model(g)
    torch.testing.assert_close(out, both.gather(1, state.long().view(-1, 1)).squeeze(1))

    def error(loader) -> float:
        model.eval()
        with torch.no_grad():
            return float(torch.cat([(model(g, state_attr=s) - y).abs() for g, _, s, y in loader]).mean())

    before = error(val_loader)
    _fit(model, train, val, epochs=40, lr=3e-3, batch_size=8)
    after = error(val_loader)
    assert after < 0.5 * before, (before, after)
    with pytest.raises(ValueError, match="fidelity ids span 0..2"):
        model(g, state_attr=torch.tensor([0, 2] * 4)[: len(y)])
