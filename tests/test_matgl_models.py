"""MatGL's own M3GNet and MEGNet through this package's MatGL helpers, on whichever MatGL is installed:
the datasets, batches and freeze policies the examples (compare_models.py, train_cgat_vs_m3gnet.py) use."""

from __future__ import annotations

import pytest
import torch

from matgl_cgat.data import batch_line_graph, graph_dataset, line_graph_in_batches, mgl_collate
from matgl_cgat.graph import graph_library
from matgl_cgat.transfer import apply_policy

from .conftest import random_structure

ELEMENTS = ("O", "Mg", "Zn")


def _batch(converter, line_graph: bool):
    from matgl.graph.data import MGLDataLoader

    structures = [random_structure(i, n=3 + i % 2, elements=ELEMENTS) for i in range(4)]
    ds = graph_dataset(structures, {"y": [0.1, 0.2, 0.3, 0.4]}, converter, line_graph=line_graph)
    loader, _ = MGLDataLoader(train_data=ds, val_data=ds, collate_fn=mgl_collate(line_graph), batch_size=4)
    batch = batch_line_graph(next(iter(loader)))
    assert (batch[2] is not None) == (line_graph and graph_library() == "dgl")  # MatGL 4 builds it in forward
    return batch


@pytest.mark.parametrize("kind", ["m3gnet", "megnet"])
def test_matgl_model_trains_its_head_alone_from_package_datasets(kind):
    from matgl.ext.pymatgen import Structure2Graph
    from matgl.models import M3GNet, MEGNet
    from matgl.utils.training import ModelLightningModule

    torch.manual_seed(0)
    line_graph = kind == "m3gnet"
    model = M3GNet(element_types=ELEMENTS, is_intensive=True, readout_type="set2set", nblocks=2) if line_graph \
        else MEGNet(element_types=ELEMENTS, nblocks=2, dim_state_embedding=2, cutoff=4.0)
    g, lat, l_g, state_attr, labels = _batch(Structure2Graph(element_types=ELEMENTS, cutoff=4.0), line_graph)
    module = ModelLightningModule(model=model, loss="l1_loss",
                                  include_line_graph=line_graph_in_batches(line_graph))
    head = model.final_layer if line_graph else model.output_proj
    apply_policy(model, "head")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    pred = module(g=g, lat=lat, l_g=l_g, state_attr=state_attr).reshape(-1)
    assert pred.shape == (4,) and torch.isfinite(pred).all()
    (pred - labels.reshape(-1)).abs().mean().backward()
    optimiser.step()
    head_ids = {id(p) for p in head.parameters()}
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if id(p) in head_ids)
    for name, p in model.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        assert changed == (id(p) in head_ids and p.grad is not None and bool(p.grad.abs().sum() > 0)), name
