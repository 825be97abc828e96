"""CGAT's physics (invariances, intensivity) and plumbing (batching, gradients, presets, outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat.graph import batch_graphs
from matgl_cgat import CGAT, CGATGraphConverter

from .conftest import TINY, make_model, random_structure

EDGE_UPDATES = ["mlp", "attention"]


def predict(model, structure):
    return float(model.predict_structure(structure))


@pytest.mark.parametrize("edge_update", EDGE_UPDATES)
def test_invariant_to_site_order(edge_update):
    model = make_model(edge_update=edge_update)
    s = random_structure(n=6)
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = Structure(s.lattice, [s[i].specie for i in perm], s.frac_coords[perm])
    assert predict(model, shuffled) == pytest.approx(predict(model, s), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("edge_update", EDGE_UPDATES)
def test_invariant_to_rotation_and_translation(edge_update):
    model = make_model(edge_update=edge_update)
    s = random_structure(n=6)
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rot = rot @ np.array([[1, 0, 0], [0, np.cos(1.1), -np.sin(1.1)], [0, np.sin(1.1), np.cos(1.1)]])
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    moved = s.copy()
    moved.translate_sites(list(range(len(s))), [0.31, -0.12, 0.77])
    ref = predict(model, s)
    assert predict(model, rotated) == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert predict(model, moved) == pytest.approx(ref, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("edge_update", EDGE_UPDATES)
def test_supercell_gives_the_same_intensive_prediction(edge_update):
    model = make_model(edge_update=edge_update)
    s = random_structure(n=5)
    big = s.copy()
    big.make_supercell([2, 1, 3])
    assert predict(model, big) == pytest.approx(predict(model, s), rel=1e-5, abs=1e-6)


def test_prediction_depends_on_structure_and_chemistry(tiny_model, nacl):
    kcl = nacl.copy()
    kcl.replace_species({"Na": "K"})
    other = random_structure(n=6)
    values = [predict(tiny_model, x) for x in (nacl, kcl, other)]
    assert len({round(v, 6) for v in values}) == 3


def test_batch_equals_one_at_a_time(tiny_model, nacl, copper):
    structures = [nacl, copper, random_structure(1, n=7), random_structure(2, n=3)]
    conv = CGATGraphConverter()
    graphs = [conv.get_graph(s)[0] for s in structures]
    with torch.no_grad():
        batched = tiny_model(batch_graphs(graphs))
        single = torch.stack([tiny_model(g) for g in graphs])
    assert batched.shape == (4,)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_unary_and_sparse_structures(tiny_model, copper):
    lone = Structure(Lattice.cubic(30.0), ["Fe"], [[0, 0, 0]])
    for s in (copper, lone):
        value = predict(tiny_model, s)
        assert np.isfinite(value)
    with torch.no_grad():  # a batch made only of unary crystals has an element graph with no edges
        out = tiny_model(batch_graphs([CGATGraphConverter().get_graph(s)[0] for s in (copper, lone)]))
    assert torch.all(torch.isfinite(out))


@pytest.mark.parametrize("edge_update", EDGE_UPDATES)
def test_gradients_reach_every_trainable_parameter(edge_update, nacl):
    model = make_model(edge_update=edge_update, predict_log_sigma=True).train()
    # random structures have all 24 shell ranks, so every edge embedding row is used
    graphs = [CGATGraphConverter().get_graph(s)[0] for s in (random_structure(0, n=6), nacl, random_structure(3, n=4))]
    pred, log_sigma = model(batch_graphs(graphs), return_log_sigma=True)
    (pred.sum() + log_sigma.sum()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []


def test_recomputed_attention_gives_identical_gradients(generic):
    grads = []
    for recompute in (False, True):
        model = make_model(recompute_attention=recompute).train()
        model(CGATGraphConverter().get_graph(generic)[0]).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_rezero_head_starts_as_identity_branches():
    model = CGAT(**TINY)
    assert torch.all(model.head.alphas == 0)


def test_normalisation_is_applied_and_saved():
    model = make_model()
    g = CGATGraphConverter().get_graph(random_structure())[0]
    with torch.no_grad():
        raw = model.forward_normalized(g)[0, 0]
        model.set_normalization(-1.5, 0.25)
        assert float(model(g)) == pytest.approx(float(raw) * 0.25 - 1.5, rel=1e-6)
    assert model._init_args["data_mean"] == [-1.5] and model._init_args["data_std"] == [0.25]
    with pytest.raises(ValueError, match="positive stds"):
        model.set_normalization(0.0, 0.0)


def test_log_sigma_output_in_target_units():
    model = make_model(predict_log_sigma=True, ntargets=2, data_std=[2.0, 0.5])
    g = batch_graphs([CGATGraphConverter().get_graph(random_structure(i))[0] for i in range(3)])
    with torch.no_grad():
        pred, log_sigma = model(g, return_log_sigma=True)
        raw = model.forward_normalized(g)
    assert pred.shape == (3, 2) and log_sigma.shape == (3, 2)
    torch.testing.assert_close(log_sigma, raw[:, 2:] + torch.log(torch.tensor([2.0, 0.5])))
    with pytest.raises(ValueError, match="predict_log_sigma"):
        make_model()(g, return_log_sigma=True)


def test_graphs_with_other_neighbor_count_are_refused(tiny_model, generic):
    g = CGATGraphConverter(num_neighbors=30).get_graph(generic)[0]
    with pytest.raises(ValueError, match="num_neighbors"):
        tiny_model(g)


def test_presets():
    small = CGAT.from_preset("small")
    n_small = sum(p.numel() for p in small.parameters())
    assert 1.0e6 < n_small < 2.5e6
    assert CGAT.from_preset("small", nblocks=1).blocks.__len__() == 1
    with pytest.raises(ValueError, match="unknown CGAT preset"):
        CGAT.from_preset("huge")


def test_paper_preset_size():
    """The reference as run: ~56 M parameters here, most of them in the five hypernetworks."""
    paper = CGAT.from_preset("paper")
    total = sum(p.numel() for p in paper.parameters())
    hyper = sum(p.numel() for b in paper.blocks for p in b.hyper.parameters())
    assert 50e6 < total < 65e6
    assert 40e6 < hyper < 46e6
    assert len(paper.blocks) == 5 and paper.readout.out_dim == 640


@pytest.mark.parametrize("recompute", [False, True])
def test_inference_mode_with_grad_enabled(recompute, generic):
    """Lightning's ``trainer.test`` runs under inference_mode while MatGL's test_step enables grad."""
    tiny_model = make_model(recompute_attention=recompute)
    g = CGATGraphConverter().get_graph(generic)[0]
    with torch.no_grad():
        expected = tiny_model(g)
    tiny_model.train()
    with torch.inference_mode(), torch.enable_grad():
        out = tiny_model(g)
    torch.testing.assert_close(out, expected)


def test_output_min_bounds_predictions_and_is_saved(tmp_path):
    model = make_model()
    g = batch_graphs([CGATGraphConverter().get_graph(random_structure(i))[0] for i in range(4)])
    with torch.no_grad():
        raw = model.forward_normalized(g)[:, 0]
        model.set_normalization(-float(raw.mean()), 1.0)  # about half the predictions now negative
        free = model(g)
        model.set_output_min(0.0)
        bounded = model(g)
        assert (free < 0).any() and (free > 0).any()
        torch.testing.assert_close(bounded, free.clamp(min=0.0))
        assert torch.equal(model.forward_normalized(g)[:, 0], raw)  # training output is unbounded
    model.save(tmp_path / "m")
    loaded = CGAT.load(tmp_path / "m")
    assert loaded.output_min == 0.0
    with torch.no_grad():
        torch.testing.assert_close(loaded(g), bounded)
    model.set_output_min(None)
    with torch.no_grad():
        torch.testing.assert_close(model(g), free)
