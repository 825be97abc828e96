"""The strain check (issue #36, item 2): a crystal whose answer a 1% strain moves beyond the model's MAE
is flagged, and its sigma grows by that change; crystals whose graphs no probe changes cost no network pass."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat import CGATGraphConverter
from matgl_cgat.cli import main
from matgl_cgat.continuity import (
    STRAIN_PROBES,
    own_mae,
    same_network_input,
    strain_spread,
    strained,
    strained_graphs,
)
from matgl_cgat.domain import DomainWarning
from matgl_cgat.predict import predict_table

from .conftest import make_model, random_structure


def _tetragonal_cu(c: float) -> Structure:
    """Simple-tetragonal Cu: 4 neighbours at 3.0 A and 2 at ``c``; within 0.01 A of each other they share a
    shell, and stretching ``a`` by 1% (0.03 A) splits it."""
    return Structure(Lattice.tetragonal(3.0, c), ["Cu"], [[0, 0, 0]])


def _orthorhombic_cu() -> Structure:
    """Every neighbour shell at least 0.2 A from the next, and a uniaxial strain keeps each shell whole
    (the cell has no symmetry a strain along an axis could break): no probe changes its graph."""
    return Structure(Lattice.orthorhombic(3.0, 3.3, 3.7), ["Cu"], [[0, 0, 0]])


def _model(mae: float):
    model = make_model()
    model.set_normalization(1.0, 0.5)
    model.set_sigma_head(8)
    model.metadata = {"name": "m", "property": "e_form", "units": "eV/atom", "test_mae": mae}
    return model.eval()


def test_each_probe_strains_the_cell_it_names_and_keeps_fractional_coordinates():
    s = random_structure(3)
    assert STRAIN_PROBES == ("a+1", "a-1", "b+1", "b-1", "c+1", "c-1")
    for probe in (*STRAIN_PROBES, "iso+1", "iso-1"):
        t = strained(s, probe)
        factor = 1.01 if probe.endswith("+1") else 0.99
        expect = np.array(s.lattice.abc) * (factor if probe.startswith("iso") else
                                            np.where(np.arange(3) == "abc".index(probe[0]), factor, 1.0))
        np.testing.assert_allclose(t.lattice.abc, expect, rtol=1e-12)
        np.testing.assert_allclose(t.frac_coords, s.frac_coords)
    with pytest.raises(ValueError, match="unknown strain probe 'x\\+2'"):
        strained(s, "x+2")


def test_the_order_of_an_atoms_neighbours_within_a_shell_is_not_a_change(nacl):
    from matgl_cgat.graph import graph_fields, make_graph

    g = CGATGraphConverter().get_graph(nacl)[0]
    f = {k: v.clone() for k, v in graph_fields(g).items()}
    k = 24
    for atom in range(len(nacl)):  # reverse each atom's neighbour list: same neighbours, same shells
        block = slice(atom * k, (atom + 1) * k)
        f["src"][block] = f["src"][block].flip(0)
        f["rank"][block] = f["rank"][block].flip(0)
        f["pbc_offset"][block] = f["pbc_offset"][block].flip(0)
    dst = torch.arange(len(nacl)).repeat_interleave(k)

    def rebuilt():
        return make_graph(f["src"], dst, f["node_type"], f["rank"], f["pbc_offset"], f["frac_coords"])

    shuffled = rebuilt()
    assert same_network_input(g, shuffled)
    f["rank"][0] = f["rank"][0] + 1  # one neighbour in another shell: a change
    assert not same_network_input(g, rebuilt())


def test_a_strain_that_splits_a_shell_changes_the_network_input_and_one_far_from_any_boundary_does_not():
    converter = CGATGraphConverter()
    near = _tetragonal_cu(3.005)
    far = _orthorhombic_cu()
    g_near, g_far = converter.get_graph(near)[0], converter.get_graph(far)[0]
    assert same_network_input(g_near, converter.get_graph(near.copy())[0])
    assert not same_network_input(g_near, converter.get_graph(strained(near, "a+1"))[0])
    for probe in STRAIN_PROBES:
        assert same_network_input(g_far, converter.get_graph(strained(far, probe))[0]), probe
    # a tetragonal cell's four in-plane neighbours are one shell until a strain along a splits them
    square = _tetragonal_cu(3.5)
    assert not same_network_input(converter.get_graph(square)[0], converter.get_graph(strained(square, "a+1"))[0])
    probes = strained_graphs(converter, [far, near], [g_far, g_near])
    assert set(probes.owner.tolist()) == {1}  # only the crystal near the boundary goes to the network
    assert strained_graphs(converter, [far], [g_far]).graphs is None


def test_the_spread_is_each_crystals_largest_change_over_its_copies():
    values = torch.tensor([[1.0], [2.0], [3.0]])
    copies = torch.tensor([[1.5], [0.2], [2.0], [3.25]])
    spread = strain_spread(values, copies, np.array([0, 0, 1, 2]))
    torch.testing.assert_close(spread, torch.tensor([[0.8], [0.0], [0.25]]))
    torch.testing.assert_close(strain_spread(values, None, np.array([], dtype=np.int64)), torch.zeros(3, 1))


def test_own_mae_reads_the_card_per_fidelity():
    class Card:
        metadata = {"test_mae": {"pbe": {"n": 3, "mae": 0.4}, "hse": {"n": 2, "mae": 0.5}}}

    assert own_mae(Card(), "hse") == 0.5 and own_mae(Card()) is None
    Card.metadata = {"test_mae": 0.05}
    assert own_mae(Card()) == 0.05
    Card.metadata = {}
    assert own_mae(Card()) is None


def test_the_table_adds_the_spread_to_sigma_flags_beyond_the_mae_and_keeps_the_values():
    structures = {"near": _tetragonal_cu(3.005), "far": _orthorhombic_cu()}
    model = _model(mae=1e-6)
    plain = predict_table({"m": model}, structures, workers=0, threads=1)
    checked = predict_table({"m": model}, structures, workers=0, threads=1, strain_check=True)
    assert "m strain (eV/atom)" not in plain.columns
    np.testing.assert_allclose(checked["m (eV/atom)"], plain["m (eV/atom)"])
    spread = checked.set_index("id")["m strain (eV/atom)"]
    assert spread["far"] == 0.0 and spread["near"] > 1e-4
    for sid in ("near", "far"):
        before = float(plain.set_index("id").loc[sid, "m sigma (eV/atom)"])
        after = float(checked.set_index("id").loc[sid, "m sigma (eV/atom)"])
        assert after == pytest.approx(math.hypot(before, spread[sid]), abs=2e-4)  # the table rounds to 1e-4
    flags = checked.set_index("id")["m flags"]
    assert "near a neighbour-shell boundary: a 1% strain moves the answer by" in flags["near"]
    assert "neighbour-shell" not in flags["far"]
    # a model whose MAE is larger than the change: sigma still grows, no flag
    lenient = predict_table({"m": _model(mae=10.0)}, structures, workers=0, threads=1, strain_check=True)
    assert "neighbour-shell" not in lenient.set_index("id").loc["near", "m flags"]


def test_predict_structure_warns_near_a_boundary_and_widens_sigma_unless_told_not_to():
    model = _model(mae=1e-6)
    near = _tetragonal_cu(3.005)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, sigma = model.predict_structure(near, return_sigma=True)
    said = [str(w.message) for w in caught if issubclass(w.category, DomainWarning)]
    assert any("near a neighbour-shell boundary" in m for m in said), said
    plain_value, plain_sigma = model.predict_structure(near, return_sigma=True, check_strain=False, check_domain=False)
    assert float(value) == float(plain_value) and float(sigma) > float(plain_sigma)


def test_the_cli_strain_check_writes_its_column_and_prints_it_in_json(tmp_path, capsys):
    import json

    model = _model(mae=1e-6)
    model.save(tmp_path / "m")
    structures = tmp_path / "x.json"
    structures.write_text(json.dumps([_tetragonal_cu(3.005).as_dict(), _orthorhombic_cu().as_dict()]))
    out = tmp_path / "t.csv"
    common = ["--model", str(tmp_path / "m"), "--quiet", "--threads", "1", "--workers", "0"]
    assert main(["predict", str(structures), *common, "--out", str(out), "--strain-check"]) == 0
    assert "m strain (eV/atom)" in out.read_text().splitlines()[0]
    capsys.readouterr()
    assert main(["predict", str(structures), *common, "--format", "json", "--strain-check"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert rows[0]["m"]["strain"] > 0 and rows[1]["m"]["strain"] == 0
    assert any("neighbour-shell boundary" in f for f in rows[0]["m"]["flags"])
    assert not any("neighbour-shell boundary" in f for f in rows[1]["m"]["flags"])
    assert main(["predict", str(structures), *common, "--format", "json"]) == 0  # off unless asked, for files
    assert "strain" not in json.loads(capsys.readouterr().out)["predictions"][0]["m"]
