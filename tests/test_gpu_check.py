"""benchmarks/gpu_check.py runs on any device: checked here on the CPU, so a GPU session only measures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_check_passes_for_a_shipped_model_and_notices_a_changed_one(gpu_check, monkeypatch):
    import matgl

    (row,) = gpu_check.golden_on_device(["CGAT-PBE-Eform"], None, torch.device("cpu"))
    assert row["set"] == "demo" and row["structures"] == 5 and row["within_tolerance"], row
    original = matgl.load_model

    def perturbed(name, *args, **kwargs):
        model = original(name, *args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).mul_(1.01)  # not the shipped weights any more: the check must say so
        return model

    monkeypatch.setattr(matgl, "load_model", perturbed)
    (row,) = gpu_check.golden_on_device(["CGAT-PBE-Eform"], None, torch.device("cpu"))
    assert not row["within_tolerance"] and row["max_abs_deviation"] > 1e-4


def test_training_speed_trains_and_reports(gpu_check):
    from matgl_cgat import CGAT
    from matgl_cgat.graph import batch_graphs
    from matgl_cgat.predict import example_structures

    converter = CGAT.from_preset("small").graph_converter()
    graphs = [converter.get_graph(s)[0] for s in example_structures().values()]
    batches = [(batch_graphs(graphs), torch.tensor([-1.6, 0.5, 0.2, -3.0, 0.5]))]
    row = gpu_check.training_speed("small", "bf16-mixed", batches, torch.device("cpu"), steps=3, warmup=1)
    assert row["finite"] and row["structures_per_s"] > 0 and row["batch_size"] == 5
    assert row["last_loss"] < row["first_loss"]
    assert row["peak_memory_mib"] is None  # only measured on CUDA


def test_the_whole_script_runs_on_the_cpu_with_a_sample_smaller_than_a_batch(gpu_check, shared_data, tmp_path,
                                                                           monkeypatch):
    import json
    import sys

    out = tmp_path / "check.json"
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--data", str(shared_data), "--models",
                                      "CGAT-PBE-Eform", "--presets", "small", "--precisions", "32-true", "--sample",
                                      "6", "--steps", "1", "--warmup", "1", "--out", str(out)])
    gpu_check.main()
    rows = json.loads(out.read_text())
    assert [r["check"] for r in rows] == ["stack", "golden", "golden", "training"]
    assert all(r["within_tolerance"] for r in rows if r["check"] == "golden")
    assert rows[-1]["batch_size"] == 6 and rows[-1]["finite"]
