"""Predictions a user can trust: impossible structures refused, unusual ones flagged, sigma calibrated."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat.cli import main
from matgl_cgat.data import DataError, load_dataset
from matgl_cgat.domain import DomainWarning, TrainingDomain, domain_flags
from matgl_cgat.graph import CGATGraphConverter, ImpossibleStructure
from matgl_cgat.uncertainty import calibration, fit_sigma_head, half_width, predict_with_sigma

from .conftest import make_model, random_structure
from matgl_cgat._crystals import symmetric_structure


def rocksalt(a: float = 5.64, species=("Na", "Cl")) -> Structure:
    return symmetric_structure("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5] * 3])


# --- impossible structures: refused by the converter, so by prediction and training alike ---------

def _nan_structure():
    return Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, np.nan, 0.5]])


def _coincident():
    return Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5] * 3, [0.5] * 3])


def _scaled_to_one_cubic_angstrom():
    s = rocksalt().get_primitive_structure()
    s.scale_lattice(1.0)
    return s


@pytest.mark.parametrize("make, message", [
    (_nan_structure, "site 1 (Cl) has non-finite coordinates"),
    (_coincident, "sites 1 (Cl) and 2 (Cl) are 0.00 A apart"),
    (_scaled_to_one_cubic_angstrom, "below 0.5 of it no crystal exists"),
])
def test_impossible_structures_are_refused_with_the_reason(make, message):
    with pytest.raises(ImpossibleStructure, match=message.replace("(", r"\(").replace(")", r"\)")):
        CGATGraphConverter().get_graph(make())


def test_infinite_lattice_and_molecules_are_refused():
    from ase.build import molecule

    with pytest.raises(ImpossibleStructure, match="lattice vectors are not finite"):
        CGATGraphConverter().get_graph(Structure(Lattice(np.diag([np.inf, 4.0, 4.0])), ["Na"], [[0, 0, 0]]))
    with pytest.raises(ImpossibleStructure, match="H2O has no 3D cell"):
        CGATGraphConverter().get_graph(molecule("H2O"))


def test_poscar_with_negative_scale_is_a_one_cubic_angstrom_cell_and_refused(tmp_path, capsys):
    """VASP reads a negative scale as the cell volume: -1 makes NaCl's 2-atom cell 1 A^3."""
    s = rocksalt().get_primitive_structure()
    text = s.to(fmt="poscar").splitlines()
    text[1] = "-1.0"
    (tmp_path / "POSCAR").write_text("\n".join(text) + "\n")
    assert Structure.from_file(tmp_path / "POSCAR").volume == pytest.approx(1.0)
    model = make_model()
    model.save(tmp_path / "m", metadata={"units": "eV"})
    assert main(["predict", str(tmp_path / "POSCAR"), "--model", str(tmp_path / "m")]) == 2
    assert "below 0.5 of it no crystal exists" in capsys.readouterr().err


def test_a_real_crystal_compressed_within_reason_still_converts():
    s = rocksalt(5.64 * 0.8)  # 80% lattice constant: unusual, not impossible
    CGATGraphConverter().get_graph(s)


def test_training_data_with_overlapping_atoms_is_an_error_naming_the_record():
    with pytest.raises(DataError, match=r"structure 1 \(1\).*0\.00 A apart"):
        load_dataset([rocksalt(), _coincident()], "y", labels=[1.0, 2.0], progress=False)
    ds = load_dataset([rocksalt(), _coincident()], "y", labels=[1.0, 2.0], on_error="skip", progress=False)
    assert len(ds) == 1 and len(ds.skipped) == 1 and "apart" in ds.skipped[0][1]


# --- applicability domain -------------------------------------------------------------------------

@pytest.fixture
def domain() -> TrainingDomain:
    return TrainingDomain.from_structures([rocksalt(), rocksalt(5.0, ("Li", "F")), random_structure(1)], "test")


def test_training_domain_counts_structures_per_element_and_round_trips(domain):
    assert domain.element_counts["Na"] == 1 and domain.element_counts["Li"] == 2 and "Rn" not in domain.element_counts
    assert domain.n_structures == 3
    lo, hi = domain.volume_per_atom
    assert lo == pytest.approx(5.0**3 / 8) and hi == pytest.approx(5.64**3 / 8)
    assert TrainingDomain.from_dict(json.loads(json.dumps(domain.to_dict()))) == domain


def test_flags_rare_elements_volume_and_periodicity(domain):
    assert not domain_flags(rocksalt(), domain, min_count=1)
    rn = Structure(Lattice.cubic(4.4), ["Rn"], [[0, 0, 0]])
    flags = domain_flags(rn, domain, min_count=1)
    assert flags.rare_elements == {"Rn": 0} and "Rn (0)" in flags.messages()[0]
    expanded = rocksalt(9.0)
    flags = domain_flags(expanded, domain, min_count=1)
    assert flags.volume_per_atom == pytest.approx(9.0**3 / 8) and "outside the training range" in flags.messages()[0]
    assert domain_flags(rocksalt(), domain, min_count=2).rare_elements == {"Cl": 1, "Na": 1}


def test_slab_is_flagged_as_reduced_periodicity_and_short_contacts_are_flagged(domain):
    from ase.build import fcc111

    slab = fcc111("Cu", (1, 1, 3), vacuum=8.0)
    assert domain_flags(slab, domain).periodic_directions == 2
    squeezed = rocksalt(5.64 * 0.55)  # Na-Cl 1.55 A: 0.58 of the covalent bond 2.68 A: unusual, not impossible
    CGATGraphConverter().get_graph(squeezed)
    flags = domain_flags(squeezed, domain)
    assert flags.short_contact and "(0.58 of their covalent bond length" in flags.short_contact
    with pytest.raises(ImpossibleStructure):
        domain_flags(rocksalt(5.64 * 0.45), domain)  # 0.47: refused here as by the converter


def test_predict_structure_warns_for_unseen_elements(domain):
    model = make_model()
    model.metadata = {"domain": domain.to_dict()}
    rn = Structure(Lattice.cubic(4.4), ["Rn"], [[0, 0, 0]])
    with pytest.warns(DomainWarning, match="Rn: elements in few training structures: Rn \\(0\\)"):
        model.predict_structure(rn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainWarning)
        model.predict_structure(rn, check_domain=False)


# --- uncertainty ----------------------------------------------------------------------------------

def test_calibration_of_laplace_errors_is_exact_on_a_large_sample():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.1, 2.0, 200_000)
    err = rng.laplace(0.0, sigma / np.sqrt(2.0))
    c = calibration(err, np.zeros_like(err), sigma)
    assert c.coverage_68 == pytest.approx(0.68, abs=0.005) and c.coverage_95 == pytest.approx(0.95, abs=0.005)
    assert np.allclose(c.observed, c.levels, atol=0.006)
    too_wide = calibration(err, np.zeros_like(err), 3 * sigma)
    assert too_wide.coverage_68 > 0.9 and too_wide.nll > c.nll
    assert half_width(0.68) == pytest.approx(0.806, abs=1e-3) and half_width(0.95) == pytest.approx(2.118, abs=1e-3)


def test_sigma_head_learns_which_crystals_are_noisy_and_survives_save_and_load(tmp_path):
    """Labels = model prediction + noise whose size depends on the chemistry: the head must rank it."""
    torch.manual_seed(0)
    model = make_model()
    rng = np.random.default_rng(0)
    structures, noise = [], []
    for i in range(160):
        quiet = i % 2 == 0
        structures.append(rocksalt(5.0 + 0.01 * (i % 40), ("Na", "Cl") if quiet else ("K", "Br")))
        noise.append(0.02 if quiet else 0.5)
    clean = model.predict_dataset(load_dataset(structures, "y", labels=[0.0] * len(structures), progress=False))
    labels = [c + rng.laplace(0.0, n / np.sqrt(2.0)) for c, n in zip(clean, noise)]
    ds = load_dataset(structures, "y", labels=labels, progress=False)
    train, val = ds.subset(range(0, 100)), ds.subset(range(100, 160))
    fit = fit_sigma_head(model, train, val, target="y", epochs=300)
    pred, sigma = predict_with_sigma(fit.model, val)
    assert np.allclose(pred, [clean[i] for i in range(100, 160)], atol=1e-5)  # the network is untouched
    quiet, loud = sigma[0::2].mean(), sigma[1::2].mean()
    assert loud > 5 * quiet and 0.2 < loud < 1.0 and quiet < 0.1
    assert fit.val.spearman > 0.5

    fit.model.save(tmp_path / "m", metadata={"units": "eV"})
    import matgl

    import matgl_cgat  # noqa: F401

    again = matgl.load_model(str(tmp_path / "m"))
    value, s = again.predict_structure(structures[1], return_sigma=True, check_domain=False)
    expected = fit.model.predict_structure(structures[1], return_sigma=True, check_domain=False)
    assert float(value) == pytest.approx(float(expected[0]), rel=1e-5)
    assert float(s) == pytest.approx(float(expected[1]), rel=1e-5)
    with pytest.raises(ValueError, match="no uncertainty head"):
        model.predict_structure(structures[0], return_sigma=True, check_domain=False)


def test_finetune_drops_a_fitted_sigma_head():
    model = make_model()
    model.set_sigma_head(8)
    structures = [rocksalt(5.0 + 0.05 * i) for i in range(12)]
    tuned = model.finetune((structures, [0.1 * i for i in range(12)]), (structures[:4], [0.0, 0.1, 0.2, 0.3]),
                           epochs=1, batch_size=4, progress=False)
    assert tuned.sigma_head is None and model.sigma_head is not None


# --- the CLI's outputs ------------------------------------------------------------------------------

@pytest.fixture
def model_with_sigma(tmp_path):
    model = make_model()
    model.set_sigma_head(8)
    domain = TrainingDomain(100, {"Na": 60, "Cl": 70}, (10.0, 40.0), "test")
    model.save(tmp_path / "m", metadata={"units": "eV/atom", "property": "e_form", "domain": domain.to_dict()})
    return tmp_path / "m"


def test_predict_prints_sigma_and_flags_and_writes_them(tmp_path, model_with_sigma, capsys):
    rn = Structure(Lattice.cubic(4.4), ["Rn"], [[0, 0, 0]])
    rn.to(filename=str(tmp_path / "rn.cif"))
    rocksalt().to(filename=str(tmp_path / "nacl.cif"))
    files = [str(tmp_path / "nacl.cif"), str(tmp_path / "rn.cif")]
    assert main(["predict", *files, "--model", str(model_with_sigma), "--labels", "none"]) == 0
    out = capsys.readouterr().out
    rn_line = next(line for line in out.splitlines() if line.startswith("rn "))
    assert " ± " in rn_line and "Rn(0)" in rn_line and "domain flags" in out

    assert main(["predict", *files, "--model", str(model_with_sigma), "--out", str(tmp_path / "p.csv")]) == 0
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "p.csv"))}
    assert float(rows["rn"]["m sigma (eV/atom)"]) > 0 and "Rn (0)" in rows["rn"]["m flags"]
    assert rows["nacl"]["m flags"] == ""
    assert main(["predict", *files, "--model", str(model_with_sigma), "--out", str(tmp_path / "p.json")]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    entry = doc["predictions"][1]["m"]
    assert set(entry) == {"value", "sigma", "flags"} and entry["flags"] and entry["value"] == round(entry["value"], 4)


def test_predict_refuses_out_suffixes_it_does_not_write(tmp_path, model_with_sigma, capsys):
    assert main(["predict", "--model", str(model_with_sigma), "--out", str(tmp_path / "x.txt")]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "x.txt").exists()


def test_predict_skips_and_reports_bad_inputs_when_asked(tmp_path, model_with_sigma, capsys):
    rocksalt().to(filename=str(tmp_path / "good.cif"))
    (tmp_path / "bad.cif").write_text("not a cif")
    _coincident().to(filename=str(tmp_path / "overlap.vasp"), fmt="poscar")
    files = [str(tmp_path / f) for f in ("good.cif", "bad.cif", "overlap.vasp")]
    assert main(["predict", *files, "--model", str(model_with_sigma), "--labels", "none"]) == 2
    assert "bad.cif" in capsys.readouterr().err
    assert main(["predict", *files, "--model", str(model_with_sigma), "--on-error", "skip",
                 "--out", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "bad.cif" in err and "'overlap'" in err and "2 input(s) skipped, 1 predicted" in err
    assert [r["id"] for r in csv.DictReader(open(tmp_path / "p.csv"))] == ["good"]


def test_models_without_a_stored_domain_say_so():
    flags = domain_flags(rocksalt(), None)
    assert flags.unknown_domain and flags and "no training domain" in flags.messages()[-1] and flags.short() == "domain?"


def test_a_failing_model_is_an_error_not_a_skipped_structure():
    from matgl_cgat.predict import predict_all

    two_targets = make_model(ntargets=2)  # two values per crystal: the model's fault, named, never a skip
    with pytest.raises(ValueError, match="model mt: 2 outputs per crystal"):
        predict_all({"mt": two_targets}, {"nacl": rocksalt()}, on_error="skip", skipped=[])


def test_disordered_input_gets_the_clear_message():
    s = rocksalt()
    s.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    with pytest.raises(ValueError, match="disordered"):
        domain_flags(s, None)


def test_extxyz_input_with_reference_labels(tmp_path, model_with_sigma, capsys):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    write(tmp_path / "nacl.extxyz", [AseAtomsAdaptor.get_atoms(rocksalt())], format="extxyz")
    ref = {"mat_id": "ref-1", "structure": rocksalt().as_dict(), "e_form": -2.0}
    (tmp_path / "ref.jsonl").write_text(json.dumps(ref) + "\n")
    assert main(["predict", str(tmp_path / "nacl.extxyz"), "--model", str(model_with_sigma),
                 "--labels", str(tmp_path / "ref.jsonl")]) == 0
    assert "ref-1" in capsys.readouterr().out


def test_registering_a_shipped_name_is_refused(tmp_path):
    from matgl_cgat.pretrained import register_pretrained

    make_model().save(tmp_path / "m")
    with pytest.raises(ValueError, match="name of the shipped model CGAT-PBE-Eform"):
        register_pretrained("CGAT-PBE-EFORM", tmp_path / "m")  # any case
