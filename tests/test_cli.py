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
    column = "model (eV/atom)"  # units in the header, values rounded to 4 decimals
    assert rows[0]["formula"] == "NaCl" and float(rows[0][column]) == pytest.approx(float(rows[1][column]), abs=1e-4)
    model = make_model()
    model.set_normalization(-1.0, 0.5)
    assert float(rows[0][column]) == pytest.approx(float(model.predict_structure(nacl)), abs=1e-4)
    assert all(len(r[column].split(".")[-1]) <= 4 for r in rows)

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
    listed = [line.split() for line in out.splitlines() if line.startswith("CGAT-Listed")]
    assert listed == [["CGAT-Listed", "e_form", "eV/atom", "-", "-"]] and len(out) < 3000  # a short table
    assert main(["models", "cgat-listed"]) == 0  # one model's card, any case
    card = capsys.readouterr().out.splitlines()
    assert card[0].startswith("CGAT-Listed") and ["units", "eV/atom"] in [line.split() for line in card]
    assert main(["models", "CGAT-Lsted"]) == 2
    assert "no shipped model 'CGAT-Lsted'; did you mean CGAT-Listed?" in capsys.readouterr().err


def test_predict_shows_reference_labels_of_matching_crystals(tmp_path, saved_model, nacl, copper, capsys):
    """A labels file holding a scaled copy of NaCl (matched: StructureMatcher ignores scale) and a
    different NaCl polymorph-free decoy (CsCl-type, not matched)."""
    from pymatgen.core import Lattice, Structure

    scaled = nacl.copy()
    scaled.scale_lattice(nacl.volume * 1.05)
    decoy = Structure(Lattice.cubic(3.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    data = tmp_path / "ref.jsonl"
    data.write_text("\n".join(json.dumps({"mat_id": mid, "structure": s.as_dict(), "e_form": v})
                              for mid, s, v in (("decoy", decoy, -9.0), ("ref-1", scaled, -2.1))) + "\n")
    nacl.to(filename=str(tmp_path / "nacl.cif"))
    copper.to(filename=str(tmp_path / "cu.cif"))
    files = [str(tmp_path / "nacl.cif"), str(tmp_path / "cu.cif")]
    assert main(["predict", *files, "--model", str(saved_model), "--labels", str(data),
                 "--out", str(tmp_path / "p.csv")]) == 0
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "p.csv"))}
    assert rows["nacl"]["reference_id"] == "ref-1" and float(rows["nacl"]["model label (eV/atom)"]) == -2.1
    assert rows["cu"]["reference_id"] == "" and rows["cu"]["model label (eV/atom)"] == ""
    capsys.readouterr()
    assert main(["predict", *files, "--model", str(saved_model), "--labels", str(data)]) == 0
    out = capsys.readouterr().out
    assert "(-2.100)" in out and "ref-1" in out and "in mp_gap" in out
    assert main(["predict", *files, "--model", str(saved_model), "--labels", "none"]) == 0
    assert "ref-1" not in capsys.readouterr().out
    assert main(["predict", *files, "--model", str(saved_model), "--labels", str(tmp_path / "no.jsonl")]) == 2
    assert "no.jsonl not found" in capsys.readouterr().err
    # JSON-lines input (its structures are parsed late, in the conversion processes) matched alike
    screen = tmp_path / "screen.jsonl"
    screen.write_text("\n".join(json.dumps({"mat_id": k, "structure": s.as_dict()})
                                for k, s in (("nacl", nacl), ("cu", copper))) + "\n")
    assert main(["predict", str(screen), "--model", str(saved_model), "--labels", str(data),
                 "--out", str(tmp_path / "j.csv")]) == 0
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "j.csv"))}
    assert rows["nacl"]["reference_id"] == "ref-1" and rows["cu"]["reference_id"] == ""


def test_default_demo_shows_the_shared_labels(shared_data, capsys):
    assert main(["predict", "--model", "CGAT-PBE-BandGap"]) == 0
    out = capsys.readouterr().out
    si = next(line for line in out.splitlines() if line.startswith("Si (diamond)"))
    assert "(+0.612)" in si and "mp-149" in si
