"""torch.compile of the model core: where "auto" switches it on, the same answers, and eager again after."""

from __future__ import annotations

import copy

import pytest
import torch

from matgl_cgat import CGAT
from matgl_cgat.graph import batch_graphs
from matgl_cgat.predict import example_structures
from matgl_cgat.training import AUTO_MIN_PASSES, TrainConfig, compile_core, uncompile_core
from matgl_cgat.training import _compile


def test_auto_compiles_only_long_cpu_runs_on_the_torch_it_was_measured_on(monkeypatch):
    monkeypatch.setattr(_compile, "torch_version", lambda: (2, 13))
    assert _compile.auto_compile_part(AUTO_MIN_PASSES, "cpu") == "represent"
    assert _compile.auto_compile_part(AUTO_MIN_PASSES - 1, "cpu") is None  # compile time not repaid
    assert _compile.auto_compile_part(10 * AUTO_MIN_PASSES, "gpu") is None  # not measured there
    monkeypatch.setattr(_compile, "torch_version", lambda: (2, 2))
    assert _compile.auto_compile_part(10 * AUTO_MIN_PASSES, "cpu") is None  # fails on torch 2.2


def test_bad_settings_and_old_torch_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="compile must be one of auto, off, blocks, represent"):
        TrainConfig(compile="fast")
    model = CGAT.from_preset("small")
    with pytest.raises(ValueError, match="part='all'"):
        compile_core(model, "all")
    monkeypatch.setattr(_compile, "torch_version", lambda: (2, 2))
    with pytest.raises(RuntimeError, match="cannot compile this core"):
        compile_core(model, "represent")
    with _compile.compiled_for_training(model, "auto", 10 * AUTO_MIN_PASSES, "cpu") as part:
        assert part is None and "represent" not in model.__dict__


@pytest.mark.skipif(_compile.torch_version() < _compile.MEASURED_TORCH,
                    reason="torch.compile of the core needs torch 2.13+")
def test_compiled_core_gives_the_eager_answers_and_copies_use_their_own_weights():
    torch.manual_seed(0)
    model = CGAT.from_preset("small").eval()
    converter = model.graph_converter()
    graph = batch_graphs([converter.get_graph(s)[0] for s in example_structures().values()])
    with torch.no_grad():
        eager = model.forward_normalized(graph)
        with _compile.compiled_for_training(model, "represent", 1, "cpu") as part:
            assert part == "represent" and "represent" in model.__dict__
            torch.testing.assert_close(model.forward_normalized(graph), eager, rtol=1e-5, atol=1e-6)
            twin = copy.deepcopy(model)  # what weight averaging does
            next(twin.parameters()).mul_(1.5)
            assert (twin.forward_normalized(graph) - eager).abs().max() > 1e-4
            uncompile_core(twin)
        assert "represent" not in model.__dict__  # eager again after the run
        torch.testing.assert_close(model.forward_normalized(graph), eager)
