"""The shipped models: present, small, loadable by name offline, with complete model cards."""

from __future__ import annotations

import json
import math

import pytest

import matgl
from pymatgen.core import Lattice, Structure
from matgl_cgat import CGAT
from matgl_cgat.pretrained import _HERE

SHIPPED = sorted(p.name for p in _HERE.iterdir() if (p / "model.json").is_file())
CARD_KEYS = {"name", "property", "units", "functional", "data", "split", "preset", "parent", "policy", "test_mae",
             "command"}


def test_at_least_one_model_is_shipped():
    assert SHIPPED, "no shipped models found in matgl_cgat/pretrained"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_offline_with_card(name, monkeypatch, nacl):
    import matgl.utils.io as io

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(io, "RemoteFile", no_network)
    folder = _HERE / name
    assert all((folder / f).stat().st_size < 10 * 2**20 for f in ("model.json", "model.pt", "state.pt"))
    model = matgl.load_model(name)
    assert isinstance(model, CGAT)
    card = json.loads((folder / "model.json").read_text())["metadata"]
    assert CARD_KEYS <= set(card) and card["name"] == name
    assert model.metadata == card
    # physical sanity on textbook crystals: an ionic insulator and an elemental metal
    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    salt, metal = float(model.predict_structure(nacl)), float(model.predict_structure(copper))
    assert math.isfinite(salt) and math.isfinite(metal)
    if card["property"].startswith("gap"):
        assert salt > 2.0 and metal < 1.0, (salt, metal)
    elif card["property"] == "e_form_pbe":
        assert salt < -1.0 and abs(metal) < 0.5, (salt, metal)
