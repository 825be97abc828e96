"""The memory-lean autograd functions and the Roost context, checked against plain PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from matgl_cgat.graph import composition_graph
from matgl_cgat.layers import HyperNetwork, RoostContext, edge_mlp
from matgl_cgat.layers._hypernetwork import _Bilinear


def _double(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("tabled", [True, False])
def test_edge_mlp_matches_naive_and_gradcheck(tabled):
    torch.manual_seed(0)
    n, e, r, groups, k, c = 5, 17, 4, 3, 4, 2
    a, b = _double(n, groups * k), _double(n, groups * k)
    edge = _double(r if tabled else e, groups * k)
    w, bias = _double(groups, k, c), _double(groups, c)
    dst, src = torch.randint(0, n, (e,)), torch.randint(0, n, (e,))
    index = torch.randint(0, r, (e,)) if tabled else None

    def f(a, b, edge, w, bias):
        return edge_mlp(a, b, edge, dst, src, index, w, bias, 0.1)[0]

    assert torch.autograd.gradcheck(f, (a, b, edge, w, bias))
    edge_rows = edge[index] if tabled else edge
    naive = F.leaky_relu(a[dst] + b[src] + edge_rows, 0.1).view(e, groups, k)
    naive = torch.einsum("egk,gkc->egc", naive, w) + bias
    torch.testing.assert_close(f(a, b, edge, w, bias), naive)
    with torch.no_grad():  # the inference path skips the autograd function
        torch.testing.assert_close(f(a, b, edge, w, bias), naive)
    # split outputs (logits / messages) are the same groups, each contiguous
    first, rest = edge_mlp(a, b, edge, dst, src, index, w, bias, 0.1, split=1)
    assert first.is_contiguous() and rest.is_contiguous()
    torch.testing.assert_close(torch.cat([first, rest], 1), naive)


def test_edge_mlp_chunking_gives_identical_gradients(monkeypatch):
    import matgl_cgat.layers._edge_mlp as mod

    torch.manual_seed(1)
    n, e, r, groups, k, c = 7, 50, 5, 4, 3, 2
    args = [_double(n, groups * k), _double(n, groups * k), _double(r, groups * k)]
    w, bias = _double(groups, k, c), _double(groups, c)
    dst, src, index = torch.randint(0, n, (e,)), torch.randint(0, n, (e,)), torch.randint(0, r, (e,))

    def grads():
        for t in (*args, w, bias):
            t.grad = None
        logits, msgs = edge_mlp(*args, dst, src, index, w, bias, 0.1, split=2)
        (logits.sin().sum() + msgs.cos().sum()).backward()
        return [t.grad.clone() for t in (*args, w, bias)]

    whole = grads()
    monkeypatch.setattr(mod, "CHUNK_ELEMENTS", groups * k * 7)  # chunks of 7 edges
    chunked = grads()
    for a_, b_ in zip(whole, chunked):
        torch.testing.assert_close(a_, b_)
    with pytest.raises(ValueError, match="slope"):
        edge_mlp(*args, dst, src, index, w, bias, 0.0)


def test_bilinear_matches_generated_weights():
    x, c, w = _double(4, 3), _double(4, 2), _double(5, 6)
    assert torch.autograd.gradcheck(_Bilinear.apply, (x, c, w))
    generated = (c @ w.view(5, 3, 2).permute(2, 0, 1).reshape(2, 15)).view(4, 5, 3)  # per-atom weight matrices
    torch.testing.assert_close(_Bilinear.apply(x, c, w), torch.bmm(generated, x.unsqueeze(-1)).squeeze(-1))


def test_hypernetwork_gradcheck_and_conditioning():
    torch.manual_seed(0)
    net = HyperNetwork(6, 4, (5, 5), (7,)).double()
    x, c = _double(3, 6), _double(3, 4)
    assert torch.autograd.gradcheck(net, (x, c))
    with torch.no_grad():  # different conditioning, different function of the same input
        assert not torch.allclose(net(x, c), net(x, c + 1.0))


def test_roost_handles_unary_and_uses_fractions():
    torch.manual_seed(0)
    ctx = RoostContext(dim=8, heads=2, steps=2, hidden=12, pool_heads=2)
    # crystals: Fe (unary), FeO, Fe2O3 as node types (Z - 1)
    types = torch.tensor([25, 25, 7, 25, 25, 7, 7, 7])
    counts = torch.tensor([1, 2, 5])
    comp = composition_graph(types, counts, 103)
    vectors = torch.randn(103, 200)[comp.element_type]
    out = ctx(comp.src, comp.dst, vectors, comp.fraction, comp.num_elements)
    assert out.shape == (3, 8) and torch.all(torch.isfinite(out))
    assert not torch.allclose(out[1], out[2])  # same elements, different fractions
    # unary crystals alone (no element edges at all)
    comp1 = composition_graph(torch.tensor([25, 25]), torch.tensor([1, 1]), 103)
    assert comp1.src.numel() == 0 and comp1.dst.numel() == 0
    out1 = ctx(comp1.src, comp1.dst, vectors[:1].expand(2, -1), comp1.fraction, comp1.num_elements)
    torch.testing.assert_close(out1[0], out1[1])
    torch.testing.assert_close(out1[0], out[0])


def test_group_softmax_and_sum_match_a_loop_over_groups():
    from matgl_cgat.layers._segment import group_index, group_softmax, group_sum, neighbour_softmax_sum

    torch.manual_seed(0)
    sizes = torch.tensor([3, 1, 0, 4])  # an empty group too
    group = group_index(sizes)
    x = torch.randn(int(sizes.sum()), 2, 5) * 30  # large logits: the per-group maximum keeps exp finite
    v = torch.randn(int(sizes.sum()), 2, 5)
    alpha = group_softmax(x, group, len(sizes))
    pooled = group_sum(alpha * v, group, len(sizes))
    start = 0
    for j, n in enumerate(sizes.tolist()):
        rows = slice(start, start + n)
        if n:
            torch.testing.assert_close(alpha[rows], torch.softmax(x[rows], 0))
            torch.testing.assert_close(pooled[j], (torch.softmax(x[rows], 0) * v[rows]).sum(0))
        else:
            assert torch.all(pooled[j] == 0)
        start += n
    # k edges per receiver, receiver by receiver: the same as the grouped form with equal groups
    k = 4
    logits, values = torch.randn(3 * k, 2, 5), torch.randn(3 * k, 2, 5)
    dense = neighbour_softmax_sum(logits, values, k)
    grouped = group_sum(group_softmax(logits, group_index(torch.full((3,), k)), 3) * values,
                        group_index(torch.full((3,), k)), 3)
    torch.testing.assert_close(dense, grouped)
    with pytest.raises(ValueError, match="not 5 per receiving atom"):
        neighbour_softmax_sum(logits, values, 5)


def test_atom_graph_tensors_refuse_reordered_edges(nacl):
    from matgl_cgat.graph import AtomGraphTensors, CGATGraphConverter, atom_graph_tensors, batch_graphs, graph_fields
    from matgl_cgat.graph import make_graph

    g = CGATGraphConverter().get_graph(nacl)[0]
    x = atom_graph_tensors(batch_graphs([g, g]))
    n = len(graph_fields(g)["node_type"])
    assert isinstance(x, AtomGraphTensors) and x.num_neighbors == 24 and x.num_atoms.tolist() == [n, n]
    assert torch.equal(x.dst, torch.arange(2 * n).repeat_interleave(24))
    f = graph_fields(g)
    dst = atom_graph_tensors(g).dst
    order = torch.randperm(len(dst), generator=torch.Generator().manual_seed(0))
    shuffled = make_graph(f["src"][order].long(), dst[order], f["node_type"], f["rank"][order], f["pbc_offset"][order],
                          f["frac_coords"])
    with pytest.raises(ValueError, match="not stored receiver by receiver"):
        atom_graph_tensors(shuffled)
    with pytest.raises(TypeError, match="got str"):
        atom_graph_tensors("graph")


def test_the_model_core_imports_no_graph_library_and_predicts_from_plain_tensors(nacl, copper):
    """layers/ and models/ compute from tensors: no DGL or PyG import, the same answer without the graph."""
    import ast
    from pathlib import Path

    import matgl_cgat
    from matgl_cgat.graph import CGATGraphConverter, atom_graph_tensors, batch_graphs
    from tests.conftest import make_model

    root = Path(matgl_cgat.__file__).parent
    for path in [*(root / "layers").glob("*.py"), *(root / "models").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("dgl", "torch_geometric") for n in names), (path.name, names)
    model = make_model().eval()
    g = batch_graphs([CGATGraphConverter().get_graph(s)[0] for s in (nacl, copper)])
    with torch.no_grad():
        torch.testing.assert_close(model(atom_graph_tensors(g)), model(g), rtol=0, atol=0)
