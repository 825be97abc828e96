"""Names resolve offline on either MatGL: with every socket refused, nothing this package does reaches
the network (MatGL 4's loader would look unknown names and ``owner/name`` strings up on a model hub)."""

from __future__ import annotations

import matgl
import pytest

import matgl_cgat  # noqa: F401  (installs the loader)
from matgl_cgat.cli import main
from matgl_cgat.pretrained import load_model


def test_shipped_names_load_with_the_network_blocked(no_network, nacl):
    model = matgl.load_model("cgat-pbe-ehull")  # any case
    assert model.metadata["name"] == "CGAT-PBE-Ehull" and model.source == "shipped"
    assert abs(float(model.predict_structure(nacl))) < 0.1


def test_hub_addresses_and_unknown_names_fail_fast_without_the_network(no_network):
    # the package's loader (and CLI) for MatGL's names: MatGL's cache or a clear error, never the network;
    # matgl.load_model itself is MatGL's for those names (tests/test_loading.py)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_model("materialyze/M3GNet-MatPES-PBE-v2025.1-PES")  # MatGL 4's hub address form
    with pytest.raises(ValueError, match="download cache has no copy"):
        load_model("M3GNet-Not-A-Cached-Model-2099")
    with pytest.raises(ValueError, match="no pretrained CGAT model 'CGAT-PBE-Eform2'.*CGAT-PBE-Eform"):
        matgl.load_model("CGAT-PBE-Eform2")
    with pytest.raises(TypeError, match="load with no options"):
        matgl.load_model("CGAT-PBE-Ehull", force_download=True)


def test_the_cli_screens_with_the_network_blocked(no_network, tmp_path, capsys):
    assert main(["predict", "--model", "CGAT-PBE-Eform", "--labels", "none", "--quiet"]) == 0
    assert "NaCl" in capsys.readouterr().out
