"""Shared fixtures: small structures built with pymatgen, small seeded models, the shared data path."""

from __future__ import annotations

import os

os.environ.setdefault("DGLBACKEND", "pytorch")

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat import CGAT
from matgl_cgat.data import default_data_dir
from matgl_cgat.graph import covalent_radius
from matgl_cgat._crystals import symmetric_structure

torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def potential_energy_cache(tmp_path_factory):
    """Potential energies computed by the tests go to a temporary cache, never the user's ~/.cache."""
    old = os.environ.get("MATGL_CGAT_CACHE")
    os.environ["MATGL_CGAT_CACHE"] = str(tmp_path_factory.mktemp("matgl_cgat_cache"))
    yield
    if old is None:
        os.environ.pop("MATGL_CGAT_CACHE", None)
    else:
        os.environ["MATGL_CGAT_CACHE"] = old

# A deliberately tiny configuration: every mechanism of the paper model, at test speed.
TINY = {
    "dim": 16,
    "edge_dim": 8,
    "nblocks": 2,
    "heads": 2,
    "generator_dims": (8, 8),
    "hyper_hidden_dims": (16,),
    "roost_dim": 8,
    "roost_heads": 2,
    "roost_steps": 2,
    "roost_hidden": 12,
    "readout_heads": 2,
    "head_dims": (24, 16),
}


def make_model(seed: int = 0, **overrides) -> CGAT:
    """A tiny CGAT whose ReZero scalars are non-zero, so the residual head is exercised."""
    torch.manual_seed(seed)
    model = CGAT(**{**TINY, **overrides})
    with torch.no_grad():
        model.head.alphas.uniform_(0.3, 0.7)
    return model.eval()


@pytest.fixture
def tiny_model() -> CGAT:
    return make_model()


def random_structure(seed: int = 0, n: int = 5, elements=("Li", "Fe", "O", "P")) -> Structure:
    """A generic (low-symmetry) structure: all neighbour distances distinct, so no ties.

    Sites are placed one by one at random, redrawing any that would come closer than 0.6 of a
    covalent bond length to an earlier one (or its images): the converter refuses atoms on top of
    each other (below 0.5), so test crystals must be physically possible.
    """
    rng = np.random.default_rng(seed)
    lattice = Lattice.from_parameters(4.1, 4.7, 5.3, 83.0, 97.0, 101.0)
    species = [elements[i % len(elements)] for i in range(n)]
    radii = [covalent_radius(e) for e in species]
    coords: list = []
    while len(coords) < n:
        trial = rng.random(3)
        i = len(coords)
        points = np.array(coords + [trial])
        dist = lattice.get_all_distances(points, points)[i]  # minimum-image distances to every site so far
        dist[i] = min(lattice.abc)  # the site's own images
        if all(dist[j] >= 0.6 * (radii[i] + radii[j]) for j in range(i + 1)):
            coords.append(trial)
    return Structure(lattice, species, coords)


@pytest.fixture
def generic() -> Structure:
    return random_structure()


@pytest.fixture
def nacl() -> Structure:
    return symmetric_structure("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def copper() -> Structure:
    return Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data/mp_gap, or skip with the reason."""
    path = default_data_dir()
    if path is None:
        pytest.skip("shared data ../shared/data/mp_gap not found (set MATGL_CGAT_DATA to its folder)")
    return path


#: Every label column of mp_gap.jsonl.gz.
MP_GAP_COLUMNS = ("e_form_pbe", "e_hull_pbe", "gap_pbe", "gap_hse", "gap_gllbsc", "gap_scan", "vol_pbe")


@pytest.fixture(scope="session")
def mp_gap_graphs(shared_data, tmp_path_factory):
    """All 35,592 records of the shared mp_gap file with every label column, converted once per session
    (about a minute on 2 cores) for every test that needs the real data; pick labels with
    ``with_targets``/``with_target``."""
    from matgl_cgat.data import load_dataset

    return load_dataset(shared_data / "mp_gap.jsonl.gz", list(MP_GAP_COLUMNS), require="any",
                        cache_dir=tmp_path_factory.mktemp("mp_gap_graphs"), progress=False)


def fields(g) -> dict:
    """One graph's tensors (src, dst, node_type, rank, pbc_offset, frac_coords) on either graph library."""
    from matgl_cgat.graph import graph_fields

    out = dict(graph_fields(g))
    n = len(out["node_type"])
    out["dst"] = torch.arange(n).repeat_interleave(len(out["src"]) // n)
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection refused (and MatGL 1.x's downloader, where it exists): any network call fails."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    import matgl.utils.io as io

    if hasattr(io, "RemoteFile"):
        monkeypatch.setattr(io, "RemoteFile", refuse)
