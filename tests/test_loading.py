"""Loading by name or path (issue #13): a shipped name means the shipped model, folders are read
weights-only (never unpickled), nothing goes to the network."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import matgl
import pytest
import torch
from pymatgen.core import Lattice, Structure

import matgl_cgat
from matgl_cgat import CGAT
from matgl_cgat.cli import main
from matgl_cgat.pretrained import _HERE, UnsafeModelError, matgl_original_load_model
from matgl_cgat.pretrained import load_model as cgat_load_model

from .conftest import make_model
from matgl_cgat._crystals import symmetric_structure

SHIPPED = "CGAT-PBE-BandGap"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_shipped_name_means_the_shipped_model_even_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    decoy = make_model(seed=1)
    decoy.save(tmp_path / SHIPPED, metadata={"name": "decoy"})
    shipped = CGAT.load(_HERE / SHIPPED)

    with pytest.warns(UserWarning, match=r"local folder CGAT-PBE-BandGap was NOT used.*'\./CGAT-PBE-BandGap'"):
        model = matgl.load_model(SHIPPED)
    assert same_weights(model, shipped) and model.source == "shipped"

    local = matgl.load_model(f"./{SHIPPED}")
    assert same_weights(local, decoy) and local.metadata == {"name": "decoy"}
    assert local.source == str(tmp_path / SHIPPED)
    assert same_weights(matgl.load_model(Path(SHIPPED)), decoy)  # a Path is always a path

    lower = matgl.load_model("cgat-pbe-bandgap")  # no folder of that spelling here: no warning either
    assert same_weights(lower, shipped) and lower.metadata["name"] == SHIPPED
    assert matgl.load_model(_HERE / SHIPPED).source == "shipped"  # the shipped folder's own path
    with pytest.raises(ValueError, match=r"no pretrained CGAT model 'CGAT-PBE-Bandgapp'.*did you mean CGAT-PBE-BandGap"):
        matgl.load_model("CGAT-PBE-Bandgapp")


def test_unknown_cgat_name_is_never_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_model().save(tmp_path / "CGAT-Mine")
    with pytest.raises(ValueError, match=r"pass './CGAT-Mine'"):
        matgl.load_model("CGAT-Mine")
    assert isinstance(matgl.load_model("./CGAT-Mine"), CGAT)
    make_model().save(tmp_path / "my_cgat")  # other bare names are relative paths, as in MatGL
    assert matgl.load_model("my_cgat").source == str(tmp_path / "my_cgat")


class _WritesMarker:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _crafted_m3gnet_folder(folder: Path, marker: Path) -> Path:
    """A folder claiming to be a MatGL M3GNet whose model.pt runs code when unpickled."""
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"@module": "matgl.models._m3gnet", "@class": "M3GNet",
                                                   "@model_version": 2, "metadata": None, "kwargs": {}}))
    torch.save({"element_types": ("Li", "O"), "units": _WritesMarker(marker)}, folder / "model.pt")
    torch.save({}, folder / "state.pt")
    return folder


def test_folder_claiming_another_matgl_model_is_not_unpickled(tmp_path, capsys):
    marker = tmp_path / "marker"
    folder = _crafted_m3gnet_folder(tmp_path / "evil", marker)
    with pytest.raises(UnsafeModelError, match=r"evil/model\.pt: not readable as tensors.*may contain code"
                                               r".*matgl_original_load_model"):
        cgat_load_model(folder)  # the package's loader (and CLI); matgl.load_model is MatGL's for this folder
    assert not marker.exists()

    assert main(["predict", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "mgl-cgat: error:" in err and "model.pt" in err and "Traceback" not in err
    assert not marker.exists()

    torch.load(folder / "model.pt", weights_only=False)  # the payload is real: plain unpickling runs it
    assert marker.read_text() == "code ran"


def test_model_json_naming_a_non_model_class_is_not_imported(tmp_path):
    make_model().save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "@module": "os", "@class": "system"}))
    with pytest.raises(UnsafeModelError, match=r"names os\.system, not a MatGL or CGAT model class"):
        cgat_load_model(tmp_path / "m")


def _tiny_m3gnet():
    from matgl.models import M3GNet

    torch.manual_seed(0)
    return M3GNet(element_types=("Li", "O"), nblocks=1, units=16, dim_node_embedding=16, dim_edge_embedding=16,
                  is_intensive=True).eval()


def test_genuine_matgl_m3gnet_loads_weights_only(tmp_path, monkeypatch):
    from matgl.models import M3GNet

    model = _tiny_m3gnet()
    model.save(tmp_path / "m3g")
    def unpickling_loader(cls, *args, **kwargs):
        raise AssertionError("MatGL's IOMixIn.load (torch.load without weights_only) was called")

    monkeypatch.setattr(M3GNet, "load", classmethod(unpickling_loader))
    loaded = cgat_load_model(tmp_path / "m3g")
    assert type(loaded) is M3GNet and same_weights(loaded, model)
    assert loaded.source == str(tmp_path / "m3g")
    li2o = symmetric_structure("Fm-3m", Lattice.cubic(4.61), ["Li", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]])
    assert float(loaded.predict_structure(li2o)) == float(model.predict_structure(li2o))


def test_matgl_potential_with_numpy_args_is_refused_and_names_resolve_from_cache_only(tmp_path, monkeypatch):
    import matgl.config
    import numpy as np
    from matgl.apps.pes import Potential

    monkeypatch.setattr(matgl.config, "MATGL_CACHE", tmp_path / "cache")
    m3g = _tiny_m3gnet()
    Potential(model=m3g, element_refs=np.array([0.1, -0.2])).save(tmp_path / "pot")
    if hasattr(torch.serialization, "get_safe_globals") and np.ndarray in torch.serialization.get_safe_globals():
        # MatGL 4 registers numpy arrays as safe for weights-only loading at import: plain data, read as such
        assert type(cgat_load_model(tmp_path / "pot")) is Potential
    else:
        with pytest.raises(UnsafeModelError, match=r"pot/model\.pt: not readable.*matgl_original_load_model"):
            cgat_load_model(tmp_path / "pot")
    # MatGL's pretrained names: MatGL's download cache, weights-only; otherwise an error, no download
    Potential(model=m3g, element_refs=torch.tensor([0.1, -0.2])).save(tmp_path / "cache" / "M3GNet-Tiny-PES")
    pes = cgat_load_model("M3GNet-Tiny-PES")
    assert type(pes) is Potential and same_weights(pes.model, m3g)
    with pytest.raises(ValueError, match=r"never downloads.*matgl_original_load_model\('M3GNet-MP-2021.2.8-PES'\)"):
        cgat_load_model("M3GNet-MP-2021.2.8-PES")


def test_matgl_load_model_stays_matgls_for_its_own_models(tmp_path, monkeypatch):
    """Importing the package teaches matgl.load_model the CGAT names and folders and changes nothing
    else: MatGL's names, folders and options reach MatGL's own loader untouched."""
    from matgl_cgat import pretrained

    calls = []
    monkeypatch.setattr(pretrained, "_original", lambda path, **kw: calls.append((path, kw)) or "matgl's")
    assert matgl.load_model("M3GNet-MP-2021.2.8-PES", force_download=True) == "matgl's"
    m3g = _tiny_m3gnet()
    m3g.save(tmp_path / "m3g")
    assert matgl.load_model(tmp_path / "m3g") == "matgl's"
    assert calls == [("M3GNet-MP-2021.2.8-PES", {"force_download": True}), (tmp_path / "m3g", {})]
    make_model().save(tmp_path / "cgat")  # CGATs: this package's loader, offline and weights-only
    assert isinstance(matgl.load_model(tmp_path / "cgat"), CGAT)
    assert isinstance(matgl.load_model("cgat-pbe-bandgap"), CGAT) and len(calls) == 2
    with pytest.raises(TypeError, match="CGAT models load with no options"):
        matgl.load_model("CGAT-PBE-BandGap", force_download=True)


def test_cli_says_when_a_local_folder_is_used(tmp_path, capsys):
    make_model().save(tmp_path / "m", metadata={"units": "eV"})
    assert main(["predict", "--model", str(tmp_path / "m"), "--labels", "none"]) == 0
    assert f"using the model folder {tmp_path / 'm'} (not a shipped model)" in capsys.readouterr().err


def test_original_matgl_loader_stays_reachable(tmp_path):
    make_model().save(tmp_path / "m")
    assert isinstance(matgl_original_load_model(tmp_path / "m"), CGAT)  # MatGL's loader, then CGAT.load
    assert matgl.load_model is not matgl_original_load_model


def test_every_torch_load_in_the_package_is_weights_only():
    """A source check, so that a new ``torch.load`` without ``weights_only=True`` cannot slip in."""
    package = Path(matgl_cgat.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
            if (name == "torch.load" and not safe) or name in ("pickle.load", "pickle.loads", "dill.load"):
                offenders.append(f"{path.relative_to(package)}:{node.lineno} {name}")
    assert not offenders
