"""The ``mgl-cgat`` command line on files it writes itself."""

from __future__ import annotations

import csv
import json

import pytest

from matgl_cgat.cli import main

from .conftest import make_model, random_structure


@pytest.fixture
def saved_model(tmp_path):
    model = make_model()
    model.set_normalization(-1.0, 0.5)
    model.save(tmp_path / "model", metadata={"units": "eV/atom", "property": "e_form"})
    return tmp_path / "model"


def test_predict_files_to_csv_and_json(tmp_path, saved_model, nacl, capsys):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    nacl.to(filename=str(tmp_path / "nacl.cif"))
    nacl.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    frames = [AseAtomsAdaptor.get_atoms(random_structure(i)) for i in range(2)]
    write(tmp_path / "two.extxyz", frames, format="extxyz")
    (tmp_path / "s.json").write_text(json.dumps({"mat_id": "mp-x", "structure": random_structure(7).as_dict()}))
    files = [str(tmp_path / f) for f in ("nacl.cif", "POSCAR", "two.extxyz", "s.json")]

    assert main(["predict", *files, "--model", str(saved_model), "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["id"] for r in rows] == ["nacl", "POSCAR", "two:0", "two:1", "mp-x"]
    assert rows[0]["formula"] == "NaCl" and float(rows[0]["model"]) == pytest.approx(float(rows[1]["model"]), abs=1e-5)
    model = make_model()
    model.set_normalization(-1.0, 0.5)
    assert float(rows[0]["model"]) == pytest.approx(float(model.predict_structure(nacl)), abs=1e-5)

    assert main(["predict", files[0], "--model", str(saved_model), "--out", str(tmp_path / "p.json")]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["units"] == {"model": "eV/atom"} and doc["predictions"][0]["id"] == "nacl"


def test_predict_examples_table_and_errors(tmp_path, saved_model, capsys):
    assert main(["predict", "--model", str(saved_model)]) == 0
    out = capsys.readouterr().out
    assert "model (eV/atom)" in out and "SrTiO3" in out and "Cu (fcc)" in out
    (tmp_path / "bad.cif").write_text("not a cif")
    assert main(["predict", str(tmp_path / "bad.cif"), "--model", str(saved_model)]) == 2
    assert "bad.cif: cannot read a structure" in capsys.readouterr().err


def test_models_lists_cards(tmp_path, saved_model, capsys, monkeypatch):
    import matgl_cgat.pretrained as pretrained
    from matgl_cgat.pretrained import register_pretrained

    monkeypatch.setattr(pretrained, "_extra", {})  # registration stays local to this test

    register_pretrained("CGAT-Listed", saved_model)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "CGAT-Listed" in out and "units: eV/atom" in out
