"""Screening (issue #35): one batched prediction path from every input, streamed, resumable; names
that never collide; every mistake of the command line answered in one line."""

from __future__ import annotations

import csv
import gzip
import json
import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_cgat.cli import main
from matgl_cgat.data import DataError

from .conftest import make_model, random_structure
from matgl_cgat._crystals import symmetric_structure


def _gated_model():
    model = make_model()
    model.set_normalization(1.0, 0.5)
    model.set_sigma_head(8)
    model.set_metal_gate(8, threshold=0.0)
    return model.eval()


def _jsonl(path, structures, **labels):
    with gzip.open(path, "wt") as f:
        for i, s in enumerate(structures):
            record = {"mat_id": f"mp-{i}", "structure": s.as_dict(), **{k: v[i] for k, v in labels.items()}}
            f.write(json.dumps(record) + "\n")
    return path


def _run_processes(command, cwd, timeout=300):
    """Run a CLI command that starts several processes; a hang fails the test with what was printed,
    and every process it started (not only the first) is killed."""
    import os
    import signal
    import subprocess

    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            pytest.fail(f"{command[3:5]} hung for {timeout} s; stderr: {err[-2000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def test_answers_come_from_one_pass_and_equal_the_separate_calls():
    from matgl_cgat.graph import batch_graphs

    model = _gated_model()
    graphs = [model.graph_converter().get_graph(random_structure(i))[0] for i in range(4)]
    g = batch_graphs(graphs)
    calls = []
    handle = model.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        answers = model.answers(g)
    handle.remove()
    assert len(calls) == 1  # the message passing ran once for value, sigma and the gate
    with torch.no_grad():
        value, sigma = model(g, return_sigma=True)
        metal, probability = model.metal_decision(g)
    assert torch.allclose(answers.value[:, 0], value) and torch.allclose(answers.sigma[:, 0], sigma)
    assert torch.equal(answers.metal, metal) and torch.allclose(answers.metal_probability, probability)


def test_batched_table_equals_one_structure_at_a_time_and_workers_change_nothing():
    from matgl_cgat.predict import predict_all

    model = _gated_model()
    structures = {f"s{i}": random_structure(i) for i in range(5)}
    rows = predict_all({"m": model}, structures, batch_size=2)
    for row, s in zip(rows, structures.values()):
        with torch.no_grad():
            alone = float(model.predict_structure(s))
        assert row["m"] == pytest.approx(alone, abs=1e-5)
    from matgl_cgat.predict import predict_rows

    items = [(k, s, {}) for k, s in structures.items()]
    parallel = [r for chunk in predict_rows({"m": model}, items, batch_size=2, workers=2) for r in chunk]
    assert [r["id"] for r in parallel] == list(structures)
    assert [r["m"] for r in parallel] == pytest.approx([r["m"] for r in rows], abs=1e-6)
    assert [r["m sigma"] for r in parallel] == pytest.approx([r["m sigma"] for r in rows], abs=1e-6)


def test_predict_table_reads_unlabelled_json_lines_and_shows_labels_where_records_carry_them(tmp_path):
    from matgl_cgat.predict import predict_table

    model = _gated_model()
    model.metadata = {"property": "gap_pbe", "units": "eV"}
    structures = [random_structure(i) for i in range(3)]
    path = _jsonl(tmp_path / "x.jsonl.gz", structures, gap_pbe=[1.5, None, 0.0])
    table = predict_table({"m": model}, path, workers=0, threads=1)
    assert list(table["id"]) == ["mp-0", "mp-1", "mp-2"]
    assert {"m (eV)", "m sigma (eV)", "m label (eV)", "m metal", "m metal probability", "m flags"} <= set(table.columns)
    assert table["m label (eV)"].tolist()[0] == 1.5 and table["m label (eV)"].tolist()[2] == 0.0
    assert table["m label (eV)"].tolist()[1] in ("", None) or math.isnan(table["m label (eV)"].tolist()[1])
    with torch.no_grad():
        expected = [float(model.predict_structure(s)) for s in structures]
    assert table["m (eV)"].tolist() == pytest.approx(expected, abs=1e-4)
    in_memory = predict_table({"m": model}, structures, workers=0, threads=1)  # ids 0, 1, 2
    assert list(in_memory["id"]) == ["0", "1", "2"] and in_memory["m (eV)"].tolist() == pytest.approx(expected, abs=1e-4)


def test_cli_predicts_the_packages_own_data_format(tmp_path, capsys):
    model = make_model()
    model.save(tmp_path / "m", metadata={"property": "e_form", "units": "eV/atom"})
    path = _jsonl(tmp_path / "x.jsonl.gz", [random_structure(i) for i in range(3)])
    assert main(["predict", str(path), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["id"] for r in rows] == ["mp-0", "mp-1", "mp-2"] and rows[0]["m (eV/atom)"] != ""


def test_an_interrupted_screen_resumes_without_recomputing_what_it_wrote(tmp_path, monkeypatch, capsys):
    import matgl_cgat.predict as predict

    model = make_model()
    model.save(tmp_path / "m", metadata={"property": "e_form", "units": "eV/atom"})
    path = _jsonl(tmp_path / "x.jsonl.gz", [random_structure(i) for i in range(5)])
    args = ["predict", str(path), "--model", str(tmp_path / "m"), "--batch-size", "2", "--workers", "0", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "whole.csv")]) == 0

    real, seen = predict._answer_batch, []

    def interrupted(models, keys, batch, *rest):
        if seen:
            raise KeyboardInterrupt
        seen.append([r["id"] for r in batch.rows])
        return real(models, keys, batch, *rest)

    monkeypatch.setattr(predict, "_answer_batch", interrupted)
    assert main([*args, "--out", str(tmp_path / "p.csv")]) == 130
    assert not (tmp_path / "p.csv").exists() and (tmp_path / "p.csv.partial").is_file()
    assert "resumes where it stopped" in capsys.readouterr().err

    done = []
    monkeypatch.setattr(predict, "_answer_batch", lambda models, keys, batch, *rest: done.append(
        [r["id"] for r in batch.rows]) or real(models, keys, batch, *rest))
    assert main([*args, "--out", str(tmp_path / "p.csv")]) == 0
    assert "2 structures already predicted" in capsys.readouterr().err
    assert [i for b in done for i in b] == ["mp-2", "mp-3", "mp-4"]  # only what the first run had not written
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "whole.csv").read_text()
    assert not (tmp_path / "p.csv.partial").exists()

    # a finished table is the user's: not overwritten unless asked
    assert main([*args, "--out", str(tmp_path / "p.csv")]) == 2
    assert "exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "p.csv"), "--overwrite"]) == 0


def test_a_screen_over_two_processes_writes_the_one_process_table(tmp_path):
    """Two CPU processes started by Lightning (gloo), each predicting every other batch and writing
    its own part, merged in input order: the same file as one process, byte for byte."""
    import subprocess
    import sys

    model = make_model()
    model.save(tmp_path / "m", metadata={"property": "e_form", "units": "eV/atom"})
    path = _jsonl(tmp_path / "x.jsonl.gz", [random_structure(i) for i in range(7)])
    base = [sys.executable, "-m", "matgl_cgat.cli", "predict", str(path), "--model", str(tmp_path / "m"),
            "--batch-size", "2", "--quiet", "--threads", "1", "--workers", "0"]
    subprocess.run([*base, "--out", str(tmp_path / "one.csv")], check=True, cwd=tmp_path, capture_output=True,
                   timeout=300)
    two = _run_processes([*base, "--out", str(tmp_path / "two.csv"), "--devices", "2", "--accelerator", "cpu"],
                         tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "merged from 2 processes" in two.stdout
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if "part" in p.name) == []  # parts removed after the merge


def test_a_partial_table_of_another_command_is_refused(tmp_path, capsys):
    model = make_model()
    model.save(tmp_path / "m", metadata={"units": "eV"})
    model.save(tmp_path / "n", metadata={"units": "eV"})
    path = _jsonl(tmp_path / "x.jsonl.gz", [random_structure(0)])
    (tmp_path / "p.csv.partial").write_text("id,formula\n")
    (tmp_path / "p.csv.partial.json").write_text(json.dumps({"columns": ["id", "formula"], "models": ["other"]}))
    assert main(["predict", str(path), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 2
    assert "an unfinished table of another command" in capsys.readouterr().err


def test_two_models_never_share_a_column(tmp_path, capsys):
    for run in ("a", "b"):
        make_model(seed=ord(run)).save(tmp_path / run / "model", metadata={"units": "eV"})
    assert main(["predict", "--model", str(tmp_path / "a" / "model"), "--model", str(tmp_path / "b" / "model"),
                 "--labels", "none", "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    values = [h for h in header if h.endswith("(eV)") and "sigma" not in h and "strain" not in h]
    assert len(values) == 2 and len(set(values)) == 2
    assert any(str(tmp_path / "a" / "model") in h for h in values)
    assert main(["predict", "--model", str(tmp_path / "a" / "model"), "--model", str(tmp_path / "a" / "model")]) == 2
    assert "given more than once" in capsys.readouterr().err


def test_finetuned_models_are_named_after_their_property():
    import argparse
    from pathlib import Path

    from matgl_cgat.cli import _run_name

    assert _run_name(argparse.Namespace(name=None, out=Path("runs/hse"), target="gap_hse")) == "hse-gap_hse"
    assert _run_name(argparse.Namespace(name=None, out=Path("runs/gap_hse_full"), target="gap_hse")) == "gap_hse_full"
    assert _run_name(argparse.Namespace(name="Mine", out=Path("x"), target="t")) == "Mine"


def test_duplicate_ids_inside_one_file_are_an_error(tmp_path):
    from matgl_cgat.predict import read_structure_files

    s = random_structure(0)
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as f:
        for _ in range(2):
            f.write(json.dumps({"mat_id": "mp-1", "structure": s.as_dict()}) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl\.gz, line 2: duplicate structure id 'mp-1' \(first at .*line 1\)"):
        read_structure_files([tmp_path / "d.jsonl.gz"], on_error="skip", skipped=[])


def test_a_slab_from_a_cif_is_flagged_like_the_same_slab_as_atoms(tmp_path):
    from pymatgen.core.surface import SlabGenerator
    from pymatgen.io.ase import AseAtomsAdaptor

    from matgl_cgat.domain import domain_flags, inspect_structure

    bulk = symmetric_structure("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    slab = SlabGenerator(bulk, (0, 0, 1), 8, 12).get_slab()
    path = tmp_path / "slab.cif"
    slab.to(filename=str(path))
    from_cif = Structure.from_file(path)
    atoms = AseAtomsAdaptor.get_atoms(slab)
    atoms.pbc = (True, True, False)
    assert inspect_structure(from_cif).periodic_directions == 2 == inspect_structure(atoms).periodic_directions
    assert "periodic in 2 of 3 directions" in " ".join(domain_flags(from_cif, None).messages())
    assert inspect_structure(bulk).periodic_directions == 3  # a bulk crystal is not a slab
    graphite = Structure(Lattice.hexagonal(2.46, 6.7), ["C"] * 4, [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25],
                                                                   [2 / 3, 1 / 3, 0.75]])
    assert inspect_structure(graphite).periodic_directions == 3  # nor a layered one


def test_splits_are_checked_and_found_beside_their_data_by_name(tmp_path):
    from matgl_cgat.data import load_splits
    from matgl_cgat.data._prepare import splits_beside

    (tmp_path / "splits.json").write_text(json.dumps({"t": {"train": ["a"], "test": ["b"]}}))
    (tmp_path / "hifi_splits.json").write_text(json.dumps({"t": {"train": ["a", "b"], "test": ["b"]}}))
    (tmp_path / "hifi.jsonl.gz").write_bytes(b"")
    (tmp_path / "other.jsonl.gz").write_bytes(b"")
    assert splits_beside(tmp_path / "hifi.jsonl.gz") == tmp_path / "hifi_splits.json"
    assert splits_beside(tmp_path / "other.jsonl.gz") == tmp_path / "splits.json"
    with pytest.raises(DataError, match=r"hifi_splits\.json: split 't': id 'b' is in both 'train' and 'test'"):
        load_splits(tmp_path / "hifi_splits.json", "t")
    (tmp_path / "rep.json").write_text(json.dumps({"t": {"train": ["a", "a"], "test": ["b"]}}))
    with pytest.raises(DataError, match=r"id 'a' is twice in 'train'"):
        load_splits(tmp_path / "rep.json", "t")


def test_an_id_prop_id_cannot_reach_outside_its_folder(tmp_path):
    from matgl_cgat.data import load_dataset

    (tmp_path / "outside").mkdir()
    random_structure(0).to(filename=str(tmp_path / "outside" / "secret.cif"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "id_prop.csv").write_text("../outside/secret,1.0\n")
    with pytest.raises(DataError, match=r"id_prop\.csv, line 1: id '\.\./outside/secret' is not a plain file name"):
        load_dataset(tmp_path / "data", "y", progress=False)


def test_a_damaged_cache_shard_is_rebuilt_with_a_warning(tmp_path):
    from matgl_cgat.data import load_dataset

    structures = [random_structure(i) for i in range(4)]
    first = load_dataset(structures, "y", labels=[1.0, 2.0, 3.0, 4.0], cache_dir=tmp_path, shard_size=2, workers=1,
                         progress=False)
    assert len(first) == 4
    shard = next(tmp_path.glob("*/shard_00001.pt"))
    shard.write_bytes(shard.read_bytes()[:40])  # truncated, as by a full disk or an interrupted copy
    with pytest.warns(UserWarning, match=r"shard\(s\) \[1\] damaged or missing; converting them again"):
        again = load_dataset(structures, "y", labels=[1.0, 2.0, 3.0, 4.0], cache_dir=tmp_path, shard_size=2,
                             workers=1, progress=False)
    assert len(again) == 4 and [again[i][0] is not None for i in range(4)] == [True] * 4


def test_a_model_folder_is_checked_against_its_weights_before_the_network_is_built(tmp_path):
    from matgl_cgat.pretrained import load_model
    from matgl_cgat.pretrained._resolve import read_plain

    make_model().save(tmp_path / "m")
    args = read_plain(tmp_path / "m" / "model.pt", tmp_path / "m")
    torch.save({**args, "dim": 200_000}, tmp_path / "m" / "model.pt")  # a network of ~10^11 weights, if built
    with pytest.raises(ValueError, match=r"model\.pt describes a network whose .* but state\.pt has"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("argv, message", [
    (["predict", "--threads", "-1"], "argument --threads: -1 is outside 1..1024"),
    (["predict", "--batch-size", "-5"], "argument --batch-size: -5 is outside"),
    (["predict", "--batch-size", "10000000000"], "argument --batch-size: 10000000000 is outside"),
    (["train", "--target", "x", "--out", "o", "--epochs", "0"], "argument --epochs: 0 is outside"),
    (["plan", "--train-fit", "nan", "1", "--n-train", "3", "--cost-ratio", "2"],
     "argument --train-fit: nan must be a finite number"),
    (["finetune", "--model", "CGAT-PBE-Eform", "--target", "x", "--out", "o", "--lr", "-1"],
     "argument --lr: -1 must be a finite number of at least 0"),
])
def test_impossible_numbers_are_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_file_system_errors_are_one_line(monkeypatch, capsys):
    import matgl_cgat.cli as cli

    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/locked.csv")

    monkeypatch.setattr(cli, "_models", denied)
    assert main(["models"]) == 2
    assert capsys.readouterr().err.strip() == "mgl-cgat: error: /data/locked.csv: Permission denied"


def test_evaluate_never_overwrites_a_runs_test_results(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "test_metrics.json").write_text("{}")
    assert main(["evaluate", "--model", "CGAT-PBE-Eform", "--target", "e_form_pbe", "--out",
                 str(tmp_path / "run")]) == 2
    assert "already holds test_metrics.json" in capsys.readouterr().err
    assert (tmp_path / "run" / "test_metrics.json").read_text() == "{}"


def test_parallelism_follows_the_free_cores():
    from matgl_cgat._parallel import choose_parallelism, free_cores

    busy = choose_parallelism(0.8)  # a neighbour holds a core: one thread, processes convert beside it
    assert busy.threads == 1 and busy.workers == len(__import__("os").sched_getaffinity(0))
    assert (choose_parallelism(2.0).threads, choose_parallelism(2.0).workers) == (2, 0)  # idle, two cores
    assert choose_parallelism(6.0).workers == 4
    assert 0.0 <= free_cores(0.05) <= len(__import__("os").sched_getaffinity(0))


def test_training_takes_one_thread_per_free_core(monkeypatch):
    from matgl_cgat import _parallel

    monkeypatch.setattr(_parallel, "usable_cores", lambda: 2)
    assert [_parallel.training_threads(f) for f in (0.0, 0.4, 1.2, 1.6, 2.0, 7.0)] == [1, 1, 1, 2, 2, 2]


def test_vacuum_is_measured_across_the_planes_not_along_the_axes():
    from matgl_cgat.domain import vacuum_directions

    # an oblique cell: a 7 A axis that is only 4.9 A across its planes holds no 6 A vacuum layer
    oblique = Structure(Lattice.from_parameters(3.0, 3.0, 7.0, 90, 45, 90), ["Cu"], [[0, 0, 0]])
    assert vacuum_directions(oblique) == [] and np.isclose(oblique.lattice.volume / (3.0 * 3.0), 7.0 * math.sin(
        math.radians(45)))


def test_a_labels_file_that_is_not_json_lines_is_a_named_error(tmp_path, capsys):
    random_structure(0).to(filename=str(tmp_path / "x.cif"))
    needles = ", ".join(f'"element": "{e}"' for e in ("Li", "Fe", "O", "P"))  # what the matcher looks for first
    (tmp_path / "labels.jsonl").write_text(f"structure data {needles}, not JSON\n")
    model = make_model()
    model.save(tmp_path / "m", metadata={"units": "eV"})
    assert main(["predict", str(tmp_path / "x.cif"), "--model", str(tmp_path / "m"), "--labels",
                 str(tmp_path / "labels.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "labels.jsonl, line 1: not a JSON-lines structure record" in err and "Traceback" not in err


def test_alexandria_entries_stream_with_their_values_as_labels(tmp_path):
    model = make_model()
    model.save(tmp_path / "m", metadata={"property": "e_form", "units": "eV/atom"})
    entries = [{"structure": random_structure(i).as_dict(), "energy": -1.0, "data": {"mat_id": f"agm{i}", "e_form": -0.5 * i}}
               for i in range(2)]
    (tmp_path / "alex.json").write_text(json.dumps({"entries": entries}))
    assert main(["predict", str(tmp_path / "alex.json"), "--model", str(tmp_path / "m"), "--out",
                 str(tmp_path / "p.csv"), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["id"] for r in rows] == ["agm0", "agm1"] and [float(r["m label (eV/atom)"]) for r in rows] == [0.0, -0.5]


def test_one_bad_item_of_a_json_list_is_skipped_alone(tmp_path):
    from matgl_cgat.predict import read_structure_files

    good = random_structure(0).as_dict()
    (tmp_path / "list.json").write_text(json.dumps([good, good, {"bad": 1}, good]))
    skipped: list = []
    read = read_structure_files([tmp_path / "list.json"], on_error="skip", skipped=skipped)
    assert list(read) == ["list:0", "list:1", "list:3"]
    assert len(skipped) == 1 and skipped[0][0].endswith("list.json, item 2")


def test_an_id_in_two_processes_shares_is_an_error_and_no_table(tmp_path):
    import sys

    model = make_model()
    model.save(tmp_path / "m", metadata={"units": "eV"})
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        random_structure(0).to(filename=str(tmp_path / folder / "x.cif"))
    run = _run_processes([sys.executable, "-m", "matgl_cgat.cli", "predict", str(tmp_path / "a" / "x.cif"),
                          str(tmp_path / "b" / "x.cif"), "--model", str(tmp_path / "m"), "--batch-size", "1",
                          "--quiet", "--threads", "1", "--workers", "0", "--devices", "2", "--out",
                          str(tmp_path / "t.csv")], tmp_path)
    assert run.returncode == 2 and "duplicate structure id 'x' at input positions 0 and 1" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "t.csv").exists()


def test_the_kept_memory_allocator_can_be_switched_off_for_every_network(monkeypatch):
    import sys

    from matgl_cgat import _allocator

    monkeypatch.setattr(_allocator, "_applied", False)
    monkeypatch.setenv("MGL_CGAT_ALLOCATOR", "system")
    assert _allocator.keep_freed_memory() is False and _allocator._applied is False
    monkeypatch.delenv("MGL_CGAT_ALLOCATOR")
    assert _allocator.keep_freed_memory() is sys.platform.startswith("linux")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_broken_structure_parsed_in_a_worker_is_named_by_file_line_and_id(tmp_path, workers):
    from matgl_cgat.predict import predict_table

    model = _gated_model()
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"mat_id": "good", "structure": random_structure(0).as_dict()}) + "\n")
        f.write(json.dumps({"mat_id": "bad", "structure": {"lattice": "not a lattice", "sites": []}}) + "\n")
    table = predict_table({"m": model}, path, on_error="skip", workers=workers, threads=1)
    assert list(table["id"]) == ["good"]
    [(where, why)] = table.attrs["skipped"]
    assert where == "bad" and "line 2 (bad)" in why and "cannot parse the structure" in why
    with pytest.raises(DataError, match=r"x\.jsonl\.gz.*line 2.*bad.*cannot parse the structure"):
        predict_table({"m": model}, path, workers=workers, threads=1)
