"""Saving and loading: MatGL's folder format, matgl.load_model, and safe loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import matgl
from matgl_cgat import CGAT

from .conftest import make_model, random_structure


def test_save_then_matgl_load_model_round_trip(tmp_path, nacl):
    model = make_model(edge_update="attention", predict_log_sigma=True)
    model.set_normalization(-0.8, 0.6)
    model.save(tmp_path / "m", metadata={"property": "e_form", "units": "eV/atom"})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["@module"] == "matgl_cgat.models._cgat" and meta["@class"] == "CGAT"

    loaded = matgl.load_model(tmp_path / "m")
    assert isinstance(loaded, CGAT)
    assert loaded.metadata == {"property": "e_form", "units": "eV/atom"}
    for s in (nacl, random_structure(5, n=6)):
        assert float(loaded.predict_structure(s)) == float(model.predict_structure(s))
    assert loaded.data_mean.item() == pytest.approx(-0.8)
    assert loaded.blocks[0].edge_update == "attention"


def test_load_refuses_incomplete_folder_without_network(tmp_path):
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="state.pt"):
        CGAT.load(tmp_path)


def test_load_refuses_other_model_class(tmp_path, tiny_model):
    tiny_model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["@class"] = "M3GNet"
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="M3GNet"):
        CGAT.load(tmp_path)


class _Payload:
    def __reduce__(self):
        return (print, ("code from a data file ran",))


def test_load_never_executes_pickled_code(tmp_path, tiny_model, capsys):
    tiny_model.save(tmp_path)
    torch.save({"dim": 16, "evil": _Payload()}, tmp_path / "model.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        CGAT.load(tmp_path)
    assert "code from a data file ran" not in capsys.readouterr().out


def test_pretrained_names_resolve_offline_and_matgl_names_untouched(tmp_path, tiny_model, monkeypatch, nacl,
                                                                   no_network):
    import matgl_cgat.pretrained as pretrained
    from matgl_cgat.pretrained import available_models, register_pretrained

    monkeypatch.setattr(pretrained, "_extra", {})  # registration stays local to this test

    tiny_model.save(tmp_path / "CGAT-Test-Model", metadata={"property": "test", "units": "eV"})
    register_pretrained("CGAT-Test-Model", tmp_path / "CGAT-Test-Model")
    assert "CGAT-Test-Model" in available_models()

    model = matgl.load_model("CGAT-Test-Model")
    assert isinstance(model, CGAT) and model.metadata["units"] == "eV"
    assert float(model.predict_structure(nacl)) == float(tiny_model.predict_structure(nacl))
    with pytest.raises(ValueError, match="no pretrained CGAT model 'CGAT-Nope'"):
        matgl.load_model("CGAT-Nope")
    # MatGL's own names: the package's loader reads MatGL's cache only, never downloads (tests/test_loading.py)
    with pytest.raises(ValueError, match="never downloads"):
        pretrained.load_model("M3GNet-MP-2021.2.8-PES")
    with pytest.raises(ValueError, match="start with"):
        register_pretrained("Other", tmp_path)


def test_saving_over_a_model_folder_swaps_it_whole(tmp_path):
    """A re-save (e.g. adding an uncertainty head) that fails midway leaves the old model loadable."""
    from matgl_cgat import CGAT
    from tests.conftest import make_model

    model = make_model()
    model.save(tmp_path / "m", metadata={"v": 1})
    bigger = make_model()
    bigger.set_sigma_head(4)

    import matgl.utils.io as mio

    original = mio.IOMixIn.save

    def dies_after_model_pt(self, path, metadata=None, makedirs=True):
        original(self, path, metadata, makedirs)
        (Path(path) / "state.pt").unlink()
        raise RuntimeError("killed")

    mio.IOMixIn.save = dies_after_model_pt
    try:
        with pytest.raises(RuntimeError, match="killed"):
            bigger.save(tmp_path / "m", metadata={"v": 2})
    finally:
        mio.IOMixIn.save = original
    again = CGAT.load(tmp_path / "m")
    assert again.metadata == {"v": 1} and again.sigma_head is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left behind
    bigger.save(tmp_path / "m", metadata={"v": 2})
    assert CGAT.load(tmp_path / "m").sigma_head is not None
