"""Names resolve offline on either MatGL: with every socket refused, nothing this package does reaches
the network (MatGL 4's loader would look unknown names and ``owner/name`` strings up on a model hub)."""

from __future__ import annotations

import matgl
import pytest

import matgl_cgat  # noqa: F401  (installs the loader)


def test_shipped_names_load_with_the_network_blocked(no_network, nacl):
    model = matgl.load_model("cgat-pbe-ehull")  # any case
    assert model.metadata["name"] == "CGAT-PBE-Ehull" and model.source == "shipped"
    assert abs(float(model.predict_structure(nacl))) < 0.1


def test_hub_addresses_and_unknown_names_fail_fast_without_the_network(no_network):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        matgl.load_model("materialyze/M3GNet-MatPES-PBE-v2025.1-PES")  # MatGL 4's hub address form
    with pytest.raises(ValueError, match="download cache has no copy"):
        matgl.load_model("M3GNet-Not-A-Cached-Model-2099")
    with pytest.raises(ValueError, match="no pretrained CGAT model 'CGAT-PBE-Eform2'.*CGAT-PBE-Eform"):
        matgl.load_model("CGAT-PBE-Eform2")
    with pytest.raises(TypeError, match="takes no options"):
        matgl.load_model("CGAT-PBE-Ehull", force_download=True)
