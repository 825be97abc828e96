"""load_dataset: every source format, bad input, the graph cache, splits; all on files made here."""

from __future__ import annotations

import bz2
import gzip
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

import matgl_cgat.data._dataset as dataset_module
from matgl_cgat import CGATGraphConverter
from matgl_cgat.data import DataError, load_dataset, nested_subsets, random_split, split_from_file

from .conftest import fields, random_structure


def structures(n: int) -> list[Structure]:
    return [random_structure(i, n=2 + i % 4, elements=("Na", "Cl", "Mg", "O")) for i in range(n)]


def write_jsonl(path, rows) -> None:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def records(n: int = 6) -> list[dict]:
    return [
        {"mat_id": f"m-{i}", "structure": s.as_dict(), "e_form": -0.1 * i, "gap": 0.5 * i}
        for i, s in enumerate(structures(n))
    ]


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    write_jsonl(path, records())
    return path


# --- formats -------------------------------------------------------------------------------------


def test_jsonl_gz_loads_with_ids_labels_and_graphs(jsonl, tmp_path):
    ds = load_dataset(jsonl, "e_form", cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 6 and ds.ids == [f"m-{i}" for i in range(6)] and ds.skipped == []
    np.testing.assert_allclose(ds.labels["e_form"], [-0.1 * i for i in range(6)])
    g, lat, state, label = ds[3]
    ref, ref_lat, _ = CGATGraphConverter().get_graph(structures(6)[3])
    assert torch.equal(fields(g)["rank"], fields(ref)["rank"]) and torch.equal(fields(g)["src"], fields(ref)["src"])
    torch.testing.assert_close(lat, ref_lat)
    assert label == {"e_form": pytest.approx(-0.3)} and state.shape == (2,)


def test_several_targets_keyed_by_id(tmp_path):
    rows = records()
    rows[1]["gap"] = None  # a low-fidelity label everywhere, a high-fidelity one on a subset
    write_jsonl(tmp_path / "d.jsonl", rows)
    ds = load_dataset(tmp_path / "d.jsonl", ["e_form", "gap"], require="any", progress=False)
    assert len(ds) == 6 and math.isnan(ds.labels["gap"][1])
    gap = ds.with_target("gap")
    assert len(gap) == 5 and "m-1" not in gap.ids and gap[0][3].keys() == {"gap"}
    strict = load_dataset(tmp_path / "d.jsonl", ["e_form", "gap"], progress=False)
    assert len(strict) == 5 and strict.skipped[0][0] == "m-1" and "'gap'" in strict.skipped[0][1]


def test_computed_label_for_delta_learning(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", records())
    ds = load_dataset(tmp_path / "d.jsonl", "e_form", progress=False)
    part = ds.subset([1, 3, 4])
    potential = {f"m-{i}": -0.05 * i for i in range(6)}
    residual = {rid: y - potential[rid] for rid, y in zip(ds.ids, ds.labels["e_form"])}
    delta = part.with_label("residual", residual)
    assert delta.ids == ["m-1", "m-3", "m-4"] and delta.target == "residual"
    assert delta[1][3] == {"residual": pytest.approx(-0.3 + 0.15)}
    np.testing.assert_allclose(delta.labels["e_form"], [-0.1, -0.3, -0.4])  # the original label stays
    with pytest.raises(DataError, match=r"label 'residual': no finite value for 1 of 3 structures \(first: m-3\)"):
        part.with_label("residual", {k: v for k, v in residual.items() if k != "m-3"})
    with pytest.raises(ValueError, match="already a label"):
        part.with_label("e_form", residual)


def _alexandria_file(path, start: int, n: int) -> None:
    entries = []
    for i, s in enumerate(structures(start + n)[start:], start=start):
        entry = ComputedStructureEntry(s, energy=-3.0 * len(s), data={"mat_id": f"agm{i}", "e_form": -0.2 * i,
                                                                      "e_above_hull": 0.01 * i})
        entries.append(entry.as_dict())
    opener = bz2.open if str(path).endswith(".bz2") else open
    with opener(path, "wt") as f:
        json.dump({"entries": entries}, f)


def test_alexandria_shards_folder_and_energy_per_atom(tmp_path):
    folder = tmp_path / "alex"
    folder.mkdir()
    _alexandria_file(folder / "alexandria_000.json.bz2", 0, 3)
    _alexandria_file(folder / "alexandria_001.json", 3, 2)
    ds = load_dataset(folder, ["e_form", "e_above_hull", "energy_per_atom"], progress=False)
    assert ds.ids == [f"agm{i}" for i in range(5)]
    np.testing.assert_allclose(ds.labels["energy_per_atom"], -3.0)
    np.testing.assert_allclose(ds.labels["e_above_hull"], [0.01 * i for i in range(5)])
    single = load_dataset(folder / "alexandria_000.json.bz2", "e_form", progress=False)
    assert len(single) == 3


def test_cif_folder_with_id_prop(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, s in enumerate(structures(4)):
        s.to(filename=str(folder / f"c{i}.cif"))
    (folder / "id_prop.csv").write_text("".join(f"c{i},{i * 1.5}\n" for i in range(4)))
    ds = load_dataset(folder, "y", progress=False)
    assert ds.ids == ["c0", "c1", "c2", "c3"]
    np.testing.assert_allclose(ds.labels["y"], [0, 1.5, 3.0, 4.5])
    # a header row names several value columns
    (folder / "id_prop.csv").write_text("id,pbe,scan\n" + "".join(f"c{i},{i},{i + 0.5}\n" for i in range(4)))
    ds2 = load_dataset(folder, ["scan", "pbe"], progress=False)
    np.testing.assert_allclose(ds2.labels["scan"], [0.5, 1.5, 2.5, 3.5])


def test_extxyz_with_labels_in_info(tmp_path):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for i, s in enumerate(structures(3)):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info.update({"id": f"x{i}", "energy": -1.0 - i})
        frames.append(atoms)
    write(tmp_path / "d.extxyz", frames, format="extxyz")
    ds = load_dataset(tmp_path / "d.extxyz", "energy", progress=False)
    assert ds.ids == ["x0", "x1", "x2"]
    np.testing.assert_allclose(ds.labels["energy"], [-1, -2, -3])


def test_python_structures_and_atoms(tmp_path):
    from pymatgen.io.ase import AseAtomsAdaptor

    ss = structures(4)
    ds = load_dataset(ss, "y", labels=[1.0, 2.0, 3.0, 4.0], progress=False)
    assert ds.ids == ["0", "1", "2", "3"] and ds.labels["y"].tolist() == [1, 2, 3, 4]
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in ss]
    ds2 = load_dataset(atoms, ["a", "b"], labels={"a": [1, 2, 3, 4], "b": [5, 6, 7, 8]}, ids=list("pqrs"),
                       progress=False)
    assert ds2.ids == list("pqrs") and torch.equal(fields(ds2[2][0])["rank"], fields(ds[2][0])["rank"])
    with pytest.raises(ValueError, match="3 labels"):
        load_dataset(ss, "y", labels=[1, 2, 3], progress=False)


# --- bad input -----------------------------------------------------------------------------------


def test_unparsable_line_names_file_and_line_or_is_skipped(tmp_path):
    rows = records(4)
    rows.insert(2, '{"mat_id": "broken", "structure": ')
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(DataError, match=r"bad\.jsonl, line 3: not valid JSON"):
        load_dataset(path, "e_form", progress=False)
    ds = load_dataset(path, "e_form", on_error="skip", progress=False)
    assert len(ds) == 4 and len(ds.skipped) == 1 and "line 3" in ds.skipped[0][0]


def test_malformed_structure_and_bad_alexandria_file(tmp_path):
    rows = records(3)
    rows[1]["structure"] = {"lattice": "nonsense"}
    write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(DataError, match=r"s\.jsonl, line 2 \(m-1\): cannot parse the structure"):
        load_dataset(tmp_path / "s.jsonl", "e_form", progress=False)
    (tmp_path / "a.json").write_text('{"entries": [')
    with pytest.raises(DataError, match=r"a\.json: not valid JSON"):
        load_dataset(tmp_path / "a.json", "e_form", progress=False)
    (tmp_path / "b.json").write_text('{"something": []}')
    with pytest.raises(DataError, match="entries"):
        load_dataset(tmp_path / "b.json", "e_form", progress=False)


def test_disordered_structures_refused_by_default(tmp_path):
    rows = records(3)
    rows[2]["structure"] = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]]).as_dict()
    write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=r"line 3 \(m-2\).*disordered"):
        load_dataset(tmp_path / "d.jsonl", "e_form", progress=False)
    ds = load_dataset(tmp_path / "d.jsonl", "e_form", on_error="skip", progress=False)
    assert len(ds) == 2 and ds.skipped[0][0] == "m-2" and "disordered" in ds.skipped[0][1]


def test_missing_and_non_finite_labels_are_skipped_and_counted(tmp_path):
    rows = records(5)
    rows[0]["e_form"] = None
    del rows[1]["e_form"]
    rows[2]["e_form"] = float("inf")
    rows[3]["e_form"] = "n/a"
    write_jsonl(tmp_path / "l.jsonl", rows)
    ds = load_dataset(tmp_path / "l.jsonl", "e_form", progress=False)
    assert ds.ids == ["m-4"]
    assert [s[0] for s in ds.skipped] == ["m-0", "m-1", "m-2", "m-3"]
    assert "4 skipped" in ds.summary()


def test_unembeddable_element_is_named(tmp_path):
    rows = records(2)
    rows[1]["structure"] = Structure(Lattice.cubic(4.0), ["Rf"], [[0, 0, 0]]).as_dict()
    write_jsonl(tmp_path / "e.jsonl", rows)
    with pytest.raises(DataError, match=r"line 2 \(m-1\).*Rf"):
        load_dataset(tmp_path / "e.jsonl", "e_form", progress=False)


def test_empty_result_and_duplicate_ids_are_errors(tmp_path):
    rows = records(3)
    for r in rows:
        r["e_form"] = None
    write_jsonl(tmp_path / "empty.jsonl", rows)
    with pytest.raises(DataError, match="no usable records.*3 skipped"):
        load_dataset(tmp_path / "empty.jsonl", "e_form", progress=False)
    rows = records(3)
    rows[2]["mat_id"] = "m-0"
    write_jsonl(tmp_path / "dup.jsonl", rows)
    with pytest.raises(DataError, match=r"duplicate id 'm-0' at .*line 1 and .*line 3"):
        load_dataset(tmp_path / "dup.jsonl", "e_form", progress=False)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope.jsonl", "e_form", progress=False)


def test_bad_cif_is_named(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    structures(1)[0].to(filename=str(folder / "ok.cif"))
    (folder / "bad.cif").write_text("data_x\n_cell_length_a nonsense\n")
    (folder / "id_prop.csv").write_text("ok,1.0\nbad,2.0\nmissing,3.0\n")
    with pytest.raises(DataError, match=r"id_prop\.csv, line 2 \(bad\.cif\)"):
        load_dataset(folder, "y", progress=False)
    ds = load_dataset(folder, "y", on_error="skip", progress=False)
    assert ds.ids == ["ok"] and len(ds.skipped) == 2 and "not found" in ds.skipped[1][1]


# --- cache ---------------------------------------------------------------------------------------


def test_second_load_reuses_cache_and_settings_key_it(jsonl, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_dataset(jsonl, "e_form", cache_dir=cache, workers=1, progress=False)

    def fail(job):
        raise AssertionError("converted again instead of reusing the cache")

    monkeypatch.setattr(dataset_module, "_convert_shard", fail)
    again = load_dataset(jsonl, "e_form", cache_dir=cache, workers=1, progress=False)
    assert again.ids == first.ids and torch.equal(fields(again[5][0])["rank"], fields(first[5][0])["rank"])
    # any converter setting or reader setting changes the key: no stale reuse
    for kwargs in ({"converter": CGATGraphConverter(tolerance=0.05)}, {"converter": CGATGraphConverter(num_neighbors=12)},
                   {"target": "gap"}):
        with pytest.raises(AssertionError, match="converted again"):
            load_dataset(jsonl, kwargs.pop("target", "e_form"), cache_dir=cache, workers=1, progress=False, **kwargs)
    assert not list(cache.rglob("*.tmp"))


def test_cache_keys_on_content_not_place_or_time(jsonl, tmp_path, monkeypatch):
    # the same file copied afresh elsewhere (a new session's data mount) finds its graphs;
    # a changed label that keeps the file's size and time does not
    cache = tmp_path / "cache"
    first = load_dataset(jsonl, "e_form", cache_dir=cache, workers=1, progress=False)
    copy = tmp_path / "elsewhere" / jsonl.name
    copy.parent.mkdir()
    shutil.copyfile(jsonl, copy)
    os.utime(copy, ns=(1, 1))

    def fail(job):
        raise AssertionError("converted again instead of reusing the cache")

    monkeypatch.setattr(dataset_module, "_convert_shard", fail)
    again = load_dataset(copy, "e_form", cache_dir=cache, workers=1, progress=False)
    assert again.cache_key == first.cache_key and again.ids == first.ids

    rows = records()
    rows[0]["e_form"] = -1.0  # "-0.0" in the original: same width, same file size
    plain = tmp_path / "plain.jsonl"
    write_jsonl(plain, records())
    edited = tmp_path / "edited" / "plain.jsonl"
    edited.parent.mkdir()
    write_jsonl(edited, rows)
    assert plain.stat().st_size == edited.stat().st_size
    monkeypatch.undo()
    load_dataset(plain, "e_form", cache_dir=cache, workers=1, progress=False)
    stat = plain.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    monkeypatch.setattr(dataset_module, "_convert_shard", fail)
    with pytest.raises(AssertionError, match="converted again"):
        load_dataset(edited, "e_form", cache_dir=cache, workers=1, progress=False)


def test_interrupted_conversion_resumes(jsonl, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    real = dataset_module._convert_shard
    calls = []

    def interrupted(job):
        if job[1] == 2:
            raise KeyboardInterrupt
        calls.append(job[1])
        return real(job)

    monkeypatch.setattr(dataset_module, "_convert_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(jsonl, "e_form", cache_dir=cache, workers=1, shard_size=2, progress=False)
    assert calls == [0, 1]

    def counting(job):
        calls.append(job[1])
        return real(job)

    monkeypatch.setattr(dataset_module, "_convert_shard", counting)
    ds = load_dataset(jsonl, "e_form", cache_dir=cache, workers=1, shard_size=2, progress=False)
    assert calls == [0, 1, 2] and len(ds) == 6


def test_parallel_conversion_matches_serial(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, records(14))
    serial = load_dataset(path, "e_form", workers=1, shard_size=3, progress=False)
    parallel = load_dataset(path, "e_form", workers=2, shard_size=3, progress=False)
    assert parallel.ids == serial.ids
    for i in range(len(serial)):
        assert torch.equal(fields(parallel[i][0])["rank"], fields(serial[i][0])["rank"])
    bad = records(8)
    bad[6]["structure"] = {"oops": 1}
    write_jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(DataError, match=r"line 7 \(m-6\)"):
        load_dataset(tmp_path / "bad.jsonl", "e_form", workers=2, shard_size=2, progress=False)


def test_shards_load_on_demand(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, records(10))
    ds = load_dataset(path, "e_form", shard_size=3, max_cached_shards=1, progress=False)
    order = list(ds.shard_sampler(seed=1))
    assert sorted(order) == list(range(10))
    for i in order:
        ds[i]
        assert len(ds._store._cache) == 1


# --- splits and training -------------------------------------------------------------------------


def test_splits(jsonl, tmp_path):
    ds = load_dataset(jsonl, "e_form", progress=False)
    (tmp_path / "splits.json").write_text(json.dumps({"e_form": {"train": ["m-0", "m-2", "m-4", "m-5"],
                                                                 "val": ["m-1"], "test": ["m-3", "m-99"]}}))
    with pytest.raises(DataError, match="1 of 2 e_form/test ids"):
        split_from_file(ds, tmp_path / "splits.json", "e_form")
    parts = split_from_file(ds, tmp_path / "splits.json", "e_form", allow_missing=True)
    assert parts["train"].ids == ["m-0", "m-2", "m-4", "m-5"] and parts["missing"]["test"] == ["m-99"]
    assert parts.train is parts["train"] and parts.val.ids == ["m-1"] and parts.split == "splits.json['e_form']"
    (tmp_path / "bad.json").write_text(json.dumps({"e_form": {"train": ["m-0"], "tset": ["m-3"]}}))
    with pytest.raises(DataError, match=r"bad.json: split 'e_form' must have 'train' and 'test'"):
        split_from_file(ds, tmp_path / "bad.json", "e_form")
    a, b, c = random_split(ds, (0.5, 0.25, 0.25), seed=3)
    from matgl_cgat.data import Splits

    as_dict = Splits.of({"train": a, "test": c})
    assert as_dict.train is a and as_dict.val is None and "val" in as_dict and Splits.of(as_dict) is as_dict
    assert (len(a), len(b), len(c)) == (3, 2, 1) and not set(a.ids) & set(b.ids)
    assert random_split(ds, seed=3)[0].ids == random_split(ds, seed=3)[0].ids
    subsets = nested_subsets(100, [50, 10, 25], seed=0)
    assert [len(s) for s in subsets] == [10, 25, 50]
    assert set(subsets[0]) <= set(subsets[1]) <= set(subsets[2])


def test_cgat_trains_from_load_dataset(tmp_path):
    import lightning as pl
    from matgl.graph.data import MGLDataLoader, collate_fn_graph
    from matgl.utils.training import ModelLightningModule

    from .conftest import make_model

    path = tmp_path / "d.jsonl"
    write_jsonl(path, records(24))
    ds = load_dataset(path, "gap", progress=False)
    train, val = random_split(ds, (0.75, 0.25), seed=0)
    model = make_model().train()
    model.set_normalization(float(train.labels["gap"].mean()), float(train.labels["gap"].std()))
    train_loader, val_loader = MGLDataLoader(train_data=train, val_data=val, batch_size=6,
                                             collate_fn=collate_fn_graph)
    module = ModelLightningModule(model=model, loss="l1_loss", lr=3e-3)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(module, train_loader, val_loader)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert np.isfinite(trainer.callback_metrics["val_MAE"].item())


def test_read_structures_for_other_converters(jsonl):
    from matgl_cgat.data import read_structures

    rec = read_structures(jsonl, "gap", ids={"m-1", "m-4"})
    assert rec.ids == ["m-1", "m-4"] and rec.labels["gap"] == [0.5, 2.0]
    assert rec.structures[1] == structures(6)[4]
