"""Issue #13 (data and fine-tuning rows): every bad input gets a clear error naming the file, record and
problem, a warning, or a counted skip; nothing is dropped or replaced silently. One test per row."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from matgl_cgat.cli import main
from matgl_cgat.data import DataError, load_dataset
from matgl_cgat.transfer import finetune

from .conftest import make_model
from matgl_cgat._crystals import symmetric_structure


def rock_salt(a: float, species=("Na", "Cl")) -> Structure:
    return symmetric_structure("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def crystals(n: int) -> list[Structure]:
    pairs = [("Na", "Cl"), ("Mg", "O"), ("Li", "F"), ("K", "Br")]
    return [rock_salt(4.6 + 0.15 * i, pairs[i % len(pairs)]) for i in range(n)]


def write_jsonl(path, n: int, target: str = "y") -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps({"mat_id": f"r{i}", "structure": s.as_dict(), target: 0.5 + 0.25 * i}) + "\n"
                     for i, s in enumerate(crystals(n)))


@pytest.fixture
def cif_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for name, s in zip("abc", crystals(3)):
        s.to(filename=str(folder / f"{name}.cif"))
    return folder


# --- row 1: id_prop.csv whose first row looks like a header ---------------------------------------


def test_id_prop_first_row_naming_a_cif_is_a_record(cif_folder):
    table = cif_folder / "id_prop.csv"
    table.write_text("a,hello\nb,1.0\nc,2.0\n")
    with pytest.raises(DataError, match=r"id_prop\.csv, line 1 \(a\.cif\): record 'a': value 'hello' of 'y' is not "
                                        r"a number \(line 1 is read as record 'a', not as a header, because a\.cif"):
        load_dataset(cif_folder, "y", progress=False)
    ds = load_dataset(cif_folder, "y", on_error="skip", progress=False)  # or a counted skip naming it
    assert ds.ids == ["b", "c"] and len(ds.skipped) == 1
    assert "record 'a'" in ds.skipped[0][1] and "'hello'" in ds.skipped[0][1]
    # a first row of numbers is a record; a missing-value marker is a counted skip, not a header
    table.write_text("a,0.5\nb,n/a\nc,2.0\n")
    ds = load_dataset(cif_folder, "y", progress=False)
    assert ds.ids == ["a", "c"] and ds.skipped[0][0] == "b"
    # a real header (its first field names no CIF, its values are no numbers) still names the columns...
    table.write_text("id,y\na,0.5\nb,1.0\nc,2.0\n")
    assert load_dataset(cif_folder, "y", progress=False).ids == ["a", "b", "c"]
    # ...and a header without the target is the header's fault (line 1), not a record's
    table.write_text("id,hello\na,0.5\nb,1.0\n")
    with pytest.raises(DataError, match=r"id_prop\.csv, line 1: read as a header .*no column \['y'\] "
                                        r"\(columns: \['hello'\]\)"):
        load_dataset(cif_folder, "y", progress=False)


# --- row 2: in-memory items that are not structures -----------------------------------------------


def test_in_memory_non_structures_are_named_before_conversion():
    with pytest.raises(DataError, match=r"structure 0 \(id '0'\): expected a pymatgen Structure/IStructure or ASE "
                                        r"Atoms, got str 'NaCl' \(to read a file"):
        load_dataset(["NaCl", 3], "y", labels=[1.0, 2.0], progress=False)
    with pytest.raises(DataError, match=r"structure 1 \(id 'q'\): .*got int 3"):
        load_dataset([rock_salt(5.6), 3], "y", labels=[1.0, 2.0], ids=["p", "q"], progress=False)


# --- row 3: fine-tuning on one structure, no validation set ----------------------------------------


def test_finetune_on_one_structure_refuses_renormalising_and_warns(tmp_path):
    model = make_model()
    one = ([rock_salt(5.6)], [0.0])
    with pytest.raises(ValueError, match=r"renormalize=True .* needs at least 2 distinct values; the training set "
                                         r"has 1 structure\(s\) .*renormalize=False"):
        finetune(model, one, epochs=1, progress=False, out_dir=tmp_path / "a")
    with pytest.warns(UserWarning) as caught:
        tuned = finetune(model, one, renormalize=False, epochs=1, progress=False, out_dir=tmp_path / "b")
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("finetune: no validation set: the last epoch's weights are returned with no "
                            "validation check") for m in messages), messages
    assert any("only 1 training structure(s): so few cannot be expected to fit" in m and "policy='head'" in m
               for m in messages), messages
    assert tuned.data_std.item() == model.data_std.item()  # nothing invented: the source scale is kept
    # constant labels (std 0) are refused the same way, whatever their number
    with pytest.raises(ValueError, match="2 distinct values"):
        finetune(model, (crystals(3), [1.0, 1.0, 1.0]), epochs=1, progress=False, out_dir=tmp_path / "c")


# --- rows 4 and 5: explicit labels that are NaN, None, text or infinite; lengths ------------------


@pytest.mark.parametrize("bad, problem", [(math.nan, r"is nan; every structure given with labels= needs a finite"),
                                          (None, r"is None; every structure given with labels= needs a finite"),
                                          ("abc", r"is 'abc': not a number \(str\)"),
                                          (math.inf, r"is inf: not finite")])
def test_finetune_bad_explicit_label_is_an_error_naming_the_structure(tmp_path, bad, problem):
    labels = [0.5, bad, 1.5]
    with pytest.raises(DataError, match=r"finetune train data: structure 1 \(id '1'\): label 'y' " + problem):
        finetune(make_model(), (crystals(3), labels), epochs=1, progress=False, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before training
    with pytest.raises(DataError, match=r"finetune val data: structure 1 \(id '1'\)"):
        finetune(make_model(), (crystals(3), [0.5, 1.0, 1.5]), (crystals(3), labels), epochs=1, progress=False)


def test_explicit_label_lists_in_load_dataset(tmp_path):
    with pytest.raises(DataError, match="2 labels for 'y' but 3 structures"):
        finetune(make_model(), (crystals(3), [0.5, 1.0]), epochs=1, progress=False)
    with pytest.raises(DataError, match=r"structure 2 \(id 'z'\): label 'y' is True: not a number \(bool\)"):
        load_dataset(crystals(3), "y", labels=[1.0, 2.0, True], ids=["x", "y", "z"], progress=False)
    # several targets with require="any": NaN marks a missing target; a structure needs at least one
    ds = load_dataset(crystals(2), ["a", "b"], labels={"a": [1.0, math.nan], "b": [None, 2.0]}, require="any",
                      progress=False)
    assert np.isnan(ds.labels["a"][1]) and np.isnan(ds.labels["b"][0])
    with pytest.raises(DataError, match=r"structure 1 \(id '1'\): label 'a', 'b' is nan"):
        load_dataset(crystals(2), ["a", "b"], labels={"a": [1.0, math.nan], "b": [2.0, math.nan]}, require="any",
                     progress=False)


# --- row 6: finetune given a path ----------------------------------------------------------------


def test_finetune_refuses_a_path_saying_what_to_call():
    with pytest.raises(TypeError, match=r"train='some/path\.jsonl' is a path; .*load_dataset\('some/path\.jsonl', "
                                        r"target\)"):
        finetune(make_model(), "some/path.jsonl", epochs=1, progress=False)
    with pytest.raises(TypeError, match="list of Structure; structures need labels"):
        finetune(make_model(), crystals(2), epochs=1, progress=False)


# --- row 7: mgl-cgat finetune / train on a file too small for the random split ----------------------


@pytest.mark.parametrize("command", ["finetune", "train"])
def test_cli_training_on_too_few_records_fails_before_training(tmp_path, capsys, command):
    write_jsonl(tmp_path / "three.jsonl", 3)
    source = ["--model", str(tmp_path / "parent")] if command == "finetune" else ["--preset", "small"]
    if command == "finetune":
        make_model().save(tmp_path / "parent")
    rc = main([command, *source, "--data", str(tmp_path / "three.jsonl"), "--target", "y", "--epochs", "1",
               "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "three.jsonl: 'y', random 0.8/0.1/0.1 split, seed 0: the test split is empty (train 2, val 1, test 0)" in err
    assert "needs at least 8 records" in err and "--splits" in err
    assert not (tmp_path / "out").exists()  # nothing trained


# --- row 8: mgl-cgat evaluate of a model on another property ---------------------------------------


def test_cli_evaluate_says_the_model_predicts_another_property(tmp_path, capsys):
    model = make_model()
    model.metadata = {"name": "CGAT-HSE-BandGap", "property": "gap_hse", "units": "eV"}
    model.save(tmp_path / "hse")
    write_jsonl(tmp_path / "ten.jsonl", 10, target="e_form_pbe")
    common = ["--data", str(tmp_path / "ten.jsonl"), "--cache", str(tmp_path / "cache")]
    assert main(["evaluate", "--model", str(tmp_path / "hse"), *common, "--target", "e_form_pbe"]) == 0
    captured = capsys.readouterr()
    assert ("warning: CGAT-HSE-BandGap predicts gap_hse (eV); you evaluate it on e_form_pbe" in captured.err)
    printed = json.loads(captured.out[captured.out.index("{"):])
    assert printed["model_property"] == "gap_hse" and printed["target"] == "e_form_pbe"
    # the matching property: no warning
    model.metadata = {"name": "m", "property": "e_form_pbe"}
    model.save(tmp_path / "eform")
    assert main(["evaluate", "--model", str(tmp_path / "eform"), *common, "--target", "e_form_pbe"]) == 0
    assert "predicts" not in capsys.readouterr().err
