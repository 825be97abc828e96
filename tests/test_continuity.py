"""Blended shell ranks (issue #36): answers that move continuously with the geometry.

Integer shell ranks jump when a distortion opens a gap just wider than the tolerance between two
neighbour distances; ``blend`` makes such a gap count a fraction of a shell.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat import CGATGraphConverter
from matgl_cgat.graph import nearest_neighbor_shells

from .conftest import fields, make_model


def _split_shell_crystal(gap: float) -> Structure:
    """A tetragonal cell whose two nearest distances (a and c) differ by ``gap`` A."""
    return Structure(Lattice.tetragonal(3.0, 3.0 + gap), ["Cu"], [[0, 0, 0]])


def _ranks(structure, **kw):
    g, _, _ = CGATGraphConverter(**kw).get_graph(structure)
    return fields(g)["rank"]


def test_blended_ranks_equal_integer_ranks_where_every_gap_is_clear_of_the_ramp(nacl):
    hard, soft = _ranks(nacl), _ranks(nacl, blend=0.1)
    assert not hard.is_floating_point() and soft.is_floating_point()
    assert torch.equal(soft, hard.float())


def test_a_gap_in_the_ramp_counts_a_fraction_of_a_shell():
    # 4 neighbours at 3.0 A, then 2 at 3.0 + gap: the second shell's rank is 1 + (gap - 0.01) / 0.1
    for gap, expected in ((0.005, 1.0), (0.035, 1.25), (0.06, 1.5), (0.2, 2.0)):
        ranks = _ranks(_split_shell_crystal(gap), blend=0.1).view(-1)
        assert ranks[:4].tolist() == [1.0] * 4
        assert ranks[4:6].tolist() == pytest.approx([expected] * 2, abs=1e-6), gap
    assert _ranks(_split_shell_crystal(0.035)).view(-1)[4:6].tolist() == [2, 2]  # integer: a whole shell


def test_blended_ranks_move_no_more_than_the_distances_allow():
    rng = np.random.default_rng(0)
    s = Structure(Lattice.from_parameters(3.6, 3.7, 3.65, 88, 91, 90.5), ["Cu", "Zn"], [[0, 0, 0], [0.5, 0.5, 0.5]])

    def per_centre(shells):  # ranks in order of distance, centre by centre
        order = np.lexsort((shells.distances, shells.dst))
        return shells.distances[order].reshape(2, -1), shells.ranks[order].reshape(2, -1)

    d0, r0 = per_centre(nearest_neighbor_shells(s.cart_coords, s.lattice.matrix, 24, blend=0.1))
    assert (r0 % 1 != 0).any()  # this cell has gaps inside the ramp: the test is not about whole ranks
    for scale in (1e-4, 1e-3):
        moved = s.cart_coords + rng.normal(scale=scale, size=(2, 3))
        d1, r1 = per_centre(nearest_neighbor_shells(moved, s.lattice.matrix, 24, blend=0.1))
        # the k-th rank is 1 + the sum of k - 1 clipped gaps / blend, each gap moving by at most 2 max|dd|
        bound = np.arange(24) * 2 * np.abs(d1 - d0).max() / 0.1 + 1e-9
        assert (np.abs(r1 - r0) <= bound).all()
    assert nearest_neighbor_shells(s.cart_coords, s.lattice.matrix, 24).ranks.dtype == np.int64


def test_a_model_is_unchanged_by_blending_where_ranks_stay_whole_and_continuous_where_they_do_not(nacl):
    model = make_model().eval()
    hard = CGATGraphConverter(num_neighbors=model.num_neighbors, tolerance=model.tolerance)
    soft = CGATGraphConverter(num_neighbors=model.num_neighbors, tolerance=model.tolerance, blend=0.1)
    with torch.no_grad():
        assert float(model(soft.get_graph(nacl)[0])) == pytest.approx(float(model(hard.get_graph(nacl)[0])), abs=1e-5)
        # across the tolerance: integer ranks jump, blended ones move by a sliver
        before, after = _split_shell_crystal(0.0099), _split_shell_crystal(0.0101)
        jump = abs(float(model(hard.get_graph(after)[0])) - float(model(hard.get_graph(before)[0])))
        slide = abs(float(model(soft.get_graph(after)[0])) - float(model(soft.get_graph(before)[0])))
    assert jump > 1e-4 and slide < jump / 100, (jump, slide)


def test_the_blend_travels_with_a_saved_model_and_keys_the_graph_cache(tmp_path, nacl):
    from matgl_cgat.data import load_dataset
    from matgl_cgat.pretrained import load_model

    model = make_model()
    model.set_shell_blend(0.1)
    model.save(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.shell_blend == 0.1 and loaded.graph_converter().blend == 0.1
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="blend"):
            CGATGraphConverter(blend=bad)
    structures = [nacl, _split_shell_crystal(0.06)]
    soft = load_dataset(structures, "y", labels=[1.0, 2.0], cache_dir=tmp_path / "cache",
                        converter=loaded.graph_converter(), progress=False)
    hard = load_dataset(structures, "y", labels=[1.0, 2.0], cache_dir=tmp_path / "cache",
                        converter=CGATGraphConverter(), progress=False)
    assert fields(soft[1][0])["rank"].is_floating_point() and not fields(hard[1][0])["rank"].is_floating_point()
    again = load_dataset(structures, "y", labels=[1.0, 2.0], cache_dir=tmp_path / "cache",
                         converter=loaded.graph_converter(), progress=False)  # read back from the cache
    assert torch.equal(fields(again[1][0])["rank"], fields(soft[1][0])["rank"])
    assert fields(again[1][0])["rank"].view(-1)[4:6].tolist() == pytest.approx([1.5, 1.5])
