"""The shell-rank neighbour converter and the composition graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
try:  # MatGL 1.x
    from matgl.graph.compute import compute_pair_vector_and_distance
except ImportError:  # MatGL 4
    from matgl.graph._compute import compute_pair_vector_and_distance
from pymatgen.core import Lattice, Structure

from matgl_cgat.graph import atom_graph_tensors, batch_graphs, graph_library
from matgl_cgat import CGATGraphConverter
from matgl_cgat.graph import composition_graph, nearest_neighbor_shells

from .conftest import fields, random_structure


def _ranks(structure, **kw):
    g, _, _ = CGATGraphConverter(**kw).get_graph(structure)
    return g, fields(g)["rank"].view(len(structure), -1)


def test_rocksalt_shells(nacl):
    g, ranks = _ranks(nacl)
    # 6 nearest (a/2), 12 next (a/sqrt2), then 6 of the 8 at a*sqrt(3)/2.
    expected = torch.tensor([1] * 6 + [2] * 12 + [3] * 6, dtype=ranks.dtype)
    assert torch.equal(ranks, expected.expand_as(ranks))
    assert torch.equal(torch.bincount(fields(g)["dst"]), torch.full((len(nacl),), 24))
    # nearest neighbours of Na are Cl
    first = fields(g)["src"].long().view(len(nacl), 24)[:, :6]
    types = fields(g)["node_type"]
    assert torch.all(types[first] != types[:, None])


def test_lone_atom_in_big_box():
    s = Structure(Lattice.cubic(30.0), ["Fe"], [[0, 0, 0]])
    g, ranks = _ranks(s)
    assert len(fields(g)["src"]) == 24
    assert ranks.flatten().tolist() == [1] * 6 + [2] * 12 + [3] * 6
    assert torch.all(fields(g)["src"] == 0)  # all self-images


def test_bond_geometry_matches_matgl_convention(generic):
    """MatGL's bond vectors (pos[dst] - pos[src] + offset @ lattice) reproduce the searched distances."""
    z = np.array(generic.atomic_numbers)
    shells = nearest_neighbor_shells(generic.cart_coords, generic.lattice.matrix, tie_break=z)
    g, lat, _ = CGATGraphConverter().get_graph(generic)
    f = fields(g)
    if graph_library() == "dgl":
        g.ndata["pos"] = f["frac_coords"] @ lat[0]
        g.edata["pbc_offshift"] = f["pbc_offset"] @ lat[0]
        _, dist = compute_pair_vector_and_distance(g)
    else:  # MatGL 4 takes the tensors themselves
        _, dist = compute_pair_vector_and_distance(f["frac_coords"] @ lat[0], g.edge_index, f["pbc_offset"] @ lat[0])
    np.testing.assert_allclose(dist.numpy(), shells.distances, rtol=1e-5)
    # and they are the 24 nearest periodic images; only within the last (tolerance-wide) shell may the
    # element tie-break keep a neighbour up to `tolerance` farther than the 24th-nearest one
    ranks = shells.ranks.reshape(len(generic), 24)
    dists = shells.distances.reshape(len(generic), 24)
    for i in range(len(generic)):
        all_d = np.array(sorted(n.nn_distance for n in generic.get_neighbors(generic[i], 12.0)))
        inner = ranks[i] < ranks[i].max()
        np.testing.assert_allclose(np.sort(dists[i][inner]), all_d[: inner.sum()], rtol=1e-6)
        assert dists[i].max() <= all_d[23] + 1e-2 + 1e-9


def test_ranks_ignore_noise_below_tolerance(nacl):
    rng = np.random.default_rng(1)
    noisy = nacl.copy()
    for i in range(len(noisy)):
        noisy.translate_sites([i], rng.normal(scale=5e-4, size=3), frac_coords=False)
    _, clean = _ranks(nacl)
    _, noisy_ranks = _ranks(noisy)
    assert torch.equal(clean, noisy_ranks)
    # with the reference's 1e-8 A tolerance the noise splits the shells
    _, split = _ranks(noisy, tolerance=1e-8)
    assert split.max() > 3


def test_scaling_the_cell_keeps_the_graph(nacl):
    bigger = nacl.copy()
    bigger.scale_lattice(nacl.volume * 1.07)
    g1, r1 = _ranks(nacl)
    g2, r2 = _ranks(bigger)
    assert torch.equal(r1, r2)

    def signature(g):  # (centre, rank, neighbour element) for every edge: the graph as the model sees it
        f = fields(g)
        return sorted(zip(f["dst"].tolist(), f["rank"].tolist(), f["node_type"][f["src"].long()].tolist()))

    assert signature(g1) == signature(g2)


def test_every_site_gets_exactly_k_neighbors_in_sparse_anisotropic_cell():
    s = Structure(Lattice.from_parameters(3.0, 3.0, 40.0, 90, 90, 120), ["Mo", "S", "S"],
                  [[0, 0, 0.5], [1 / 3, 2 / 3, 0.54], [1 / 3, 2 / 3, 0.46]])
    for k in (1, 12, 24, 40):
        g, _, _ = CGATGraphConverter(num_neighbors=k).get_graph(s)
        assert torch.equal(torch.bincount(fields(g)["dst"]), torch.full((3,), k))
        assert int(fields(g)["rank"].min()) == 1 and int(fields(g)["rank"].max()) <= k


def test_converter_accepts_ase_atoms(generic):
    from pymatgen.io.ase import AseAtomsAdaptor

    g1, _, _ = CGATGraphConverter().get_graph(generic)
    g2, _, _ = CGATGraphConverter().get_graph(AseAtomsAdaptor.get_atoms(generic))
    assert torch.equal(fields(g1)["rank"], fields(g2)["rank"])
    assert torch.equal(fields(g1)["node_type"], fields(g2)["node_type"])


def test_bad_structures_are_refused_with_a_clear_message():
    disordered = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="disordered"):
        CGATGraphConverter().get_graph(disordered)
    with pytest.raises(TypeError, match="pymatgen Structure or ASE Atoms"):
        CGATGraphConverter().get_graph("NaCl")
    with pytest.raises(ValueError, match="tolerance"):
        CGATGraphConverter(tolerance=-1)


def test_unembeddable_element_is_named():
    from pymatgen.core import DummySpecies

    s = Structure(Lattice.cubic(3.0), [DummySpecies("X")], [[0, 0, 0]])
    with pytest.raises(ValueError, match="X that CGAT cannot embed"):
        CGATGraphConverter().get_graph(s)
    s = Structure(Lattice.cubic(3.0), ["Rf"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="Rf"):
        CGATGraphConverter().get_graph(s)


def test_composition_graph(nacl, copper):
    s = random_structure(n=7)  # Li2 Fe2 O2 P1
    graphs = [CGATGraphConverter().get_graph(x)[0] for x in (nacl, copper, s)]
    x = atom_graph_tensors(batch_graphs(graphs))
    comp = composition_graph(x.node_type, x.num_atoms, 103)
    assert comp.num_elements.tolist() == [2, 1, 4]
    symbols = ["Na", "Cl", "Cu", "Li", "O", "P", "Fe"]
    from matgl_cgat.graph import ELEMENTS

    assert sorted(ELEMENTS[i] for i in comp.element_type.tolist()) == sorted(symbols)
    assert torch.allclose(comp.fraction[:3], torch.tensor([0.5, 0.5, 1.0]))
    expected_frac = {"Li": 2 / 7, "Fe": 2 / 7, "O": 2 / 7, "P": 1 / 7}
    for t, f in zip(comp.element_type[3:].tolist(), comp.fraction[3:].tolist()):
        assert f == pytest.approx(expected_frac[ELEMENTS[t]])
    # fully connected without self loops, within each crystal only: 2*1 + 0 + 4*3 edges
    src, dst = comp.src, comp.dst
    assert src.numel() == 14 and bool(torch.all(dst[1:] >= dst[:-1]))  # grouped by receiving element
    crystal = torch.repeat_interleave(torch.arange(3), comp.num_elements)
    assert torch.equal(crystal[src], crystal[dst]) and torch.all(src != dst)


def test_conversion_is_vectorised_and_fast(generic):
    import time

    big = generic.copy()
    big.make_supercell([4, 4, 4])  # 320 sites
    t = time.perf_counter()
    g, _, _ = CGATGraphConverter().get_graph(big)
    elapsed = time.perf_counter() - t
    assert len(fields(g)["src"]) == 320 * 24
    assert elapsed < 2.0, f"conversion of 320 sites took {elapsed:.2f} s"
