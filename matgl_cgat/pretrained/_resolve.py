"""What a model name or path means, and loading it without running code (issue #13).

One resolver serves ``matgl.load_model`` (once ``matgl_cgat`` is imported) and every ``--model`` /
``--parent`` of the command line, so both read a name the same way:

- a bare string equal to a shipped (or registered) name, in any case, is that model, even when a
  folder of the same name sits in the working directory: the ``CGAT-`` namespace belongs to the
  shipped models, so what a name means never depends on where the user happens to be (the folder
  is reported in a warning with the way to load it: ``./NAME``);
- any other ``CGAT-`` name is an error listing close matches: never a folder, never the network;
- an explicit path (a ``Path``, or text with a separator, starting with ``.`` or ``~``) is a model
  folder; so is a bare non-CGAT name that exists in the working directory (``"my_cgat"``, MatGL's
  own order: path first);
- another bare name is looked up in MatGL's download cache (MatGL 1.x: ``~/.cache/matgl/NAME``;
  MatGL 4: the Hugging Face cache of MatGL's model organisation), on disk only: a MatGL pretrained
  model fetched earlier. Nothing is downloaded: MatGL's downloader hands the files to a loader that
  unpickles them. An ``owner/name`` string (MatGL 4's hub address) is a path here, never the hub.

Folders are read with ``torch.load(weights_only=True)``: tensors and plain values only. MatGL's
``MatGLModel.save`` writes the init args (``model.pt``; arguments that are MatGL models themselves
as ``{"@module", "@class", "init_args"}`` dicts) and the state dict (``state.pt``), so M3GNet,
MEGNet, ... folders read this way; the class is imported only from MatGL's or CGAT's model packages
and must be a MatGL ``IOMixIn`` module. What cannot be read so (e.g. a ``Potential`` saved with
numpy ``element_refs``, or a crafted pickle) is refused with :class:`UnsafeModelError`, which names
the file and MatGL's original loader for folders the user trusts.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

FILES = ("model.json", "model.pt", "state.pt")
#: Buffers older checkpoints carry that newer MatGL derives instead; dropped where the model has none.
_DERIVED_BUFFERS = (".onehot",)
SHIPPED, REGISTERED = "shipped", "registered"
#: Packages whose classes a model.json may name: installed model code, constructed from plain values.
SAFE_PACKAGES = ("matgl.models", "matgl.apps", "matgl_cgat.models")
_TRUSTED_HINT = ("If you trust where it came from, MatGL's own loader (which unpickles) is "
                 "matgl_cgat.pretrained.matgl_original_load_model({!r}).")


class UnsafeModelError(ValueError):
    """A model folder that cannot be read as tensors and plain values: it may contain code."""


def is_explicit_path(spec: str | os.PathLike) -> bool:
    """True for a ``Path`` or text that can only be a path: ``./X``, ``a/b``, ``/abs``, ``~/x``, ``.X``."""
    if isinstance(spec, os.PathLike):
        return True
    return os.sep in spec or "/" in spec or bool(os.altsep and os.altsep in spec) or spec.startswith((".", "~"))


def resolve(spec: str | os.PathLike, models: dict[str, Path], registered=()) -> tuple[str, Path]:
    """``(source, folder)`` for a model name or path; ``source`` is ``"shipped"``, ``"registered"`` or the
    folder's absolute path (what ``model.source`` records).

    ``models`` maps the shipped and registered names to their folders. Raises ``ValueError`` for an
    unknown ``CGAT-`` name and for a bare name that is neither a folder here nor in MatGL's cache,
    ``FileNotFoundError`` for an explicit path that is not a folder.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"a model name or folder path, not {type(spec).__name__}")
    if not str(spec).strip():
        raise ValueError("empty model name")
    if is_explicit_path(spec):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{spec}: no such model folder")
        for name, known in models.items():  # the path of a shipped folder is still the shipped model
            if known.resolve() == folder.resolve():
                return (REGISTERED if name in registered else SHIPPED), folder
        return str(folder.absolute()), folder
    by_lower = {name.lower(): name for name in models}
    name = by_lower.get(spec.lower())
    if name is not None:
        if Path(spec).exists():
            warnings.warn(f"{spec!r} is the shipped model {name}; the local folder {spec} was NOT used "
                          f"(to load that folder, pass the path './{spec}')", UserWarning, stacklevel=3)
        return (REGISTERED if name in registered else SHIPPED), models[name]
    if spec.lower().startswith("cgat-"):
        close = [by_lower[m] for m in difflib.get_close_matches(spec.lower(), by_lower, n=3, cutoff=0.6)]
        hint = f"; did you mean {' or '.join(close)}?" if close else "."
        local = f" A folder {spec} exists here: pass './{spec}' to load it." if Path(spec).exists() else ""
        raise ValueError(f"no pretrained CGAT model {spec!r} in this installation{hint} "
                         f"Available: {', '.join(sorted(models)) or 'none'}.{local}")
    if Path(spec).is_dir():
        return str(Path(spec).absolute()), Path(spec)
    cached = _matgl_cached_copy(spec)
    if cached is not None:
        return str(cached), cached
    raise ValueError(
        f"{spec!r} is neither a model folder nor a shipped CGAT model (available: {', '.join(sorted(models))}), "
        f"and MatGL's download cache has no copy of it. matgl_cgat's loader never downloads (MatGL's "
        "downloader unpickles what it fetches); if you trust MatGL's model store, fetch it once with "
        f"matgl_cgat.pretrained.matgl_original_load_model({spec!r}), after which this loader tries the "
        "cached copy weights-only.")


def _matgl_cached_copy(spec: str) -> Path | None:
    """The folder of a MatGL pretrained model fetched earlier, looked up on disk only: MatGL 1.x keeps
    it in ``MATGL_CACHE/NAME``, MatGL 2 and later in the Hugging Face cache of its model organisation
    (``huggingface_hub.try_to_load_from_cache`` reads that cache without any network call)."""
    import matgl.config

    legacy = Path(matgl.config.MATGL_CACHE) / spec
    if all((legacy / f).is_file() for f in FILES):
        return legacy
    try:
        from huggingface_hub import try_to_load_from_cache
        from matgl.utils.io import HF_MATGL_ORG
    except ImportError:  # MatGL 1.x: no hub
        return None
    found = [try_to_load_from_cache(f"{HF_MATGL_ORG}/{spec}", f) for f in FILES]
    if all(isinstance(p, str) for p in found) and len({Path(p).parent for p in found}) == 1:
        return Path(found[0]).parent
    return None


def read_plain(path: Path, folder: Path) -> Any:
    """``torch.load(weights_only=True)``, with a refusal that names the file instead of torch's hint."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as exc:
        why = str(exc).rpartition("WeightsUnpickler error: ")[2].strip()[:160]  # not torch's "re-run unsafely"
        raise UnsafeModelError(
            f"{path}: not readable as tensors and plain values ({why}); the "
            f"folder may contain code, so it was not unpickled. " + _TRUSTED_HINT.format(str(folder))) from None


def model_class(module: Any, name: Any, where: Path) -> type:
    """The class a model.json (or a nested init arg) names, imported only from :data:`SAFE_PACKAGES`."""
    import torch
    from matgl.utils.io import IOMixIn

    if not (isinstance(module, str) and isinstance(name, str)
            and any(module == p or module.startswith(p + ".") for p in SAFE_PACKAGES)):
        raise UnsafeModelError(f"{where}: names {module}.{name}, not a MatGL or CGAT model class; refusing to "
                               "import it. " + _TRUSTED_HINT.format(str(where.parent)))
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError as exc:
        # MatGL 4 made its private model modules public (``matgl.models._tensornet_pyg`` ->
        # ``matgl.models``, ``matgl.apps._pes_pyg`` -> ``matgl.apps.pes``) and maps old names the same way
        import matgl

        modern = int(matgl.__version__.split(".")[0]) >= 2  # a PyG folder must not become a DGL model on 1.x
        public = None if not modern else ("matgl.models" if module.startswith("matgl.models._") else
                                          "matgl.apps.pes" if module.startswith("matgl.apps._pes") else None)
        try:
            cls = getattr(importlib.import_module(public), name, None) if public else None
        except ImportError:
            cls = None
        if cls is None:
            raise ValueError(f"{where}: cannot import {module} ({exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module) and issubclass(cls, IOMixIn)):
        raise UnsafeModelError(f"{where}: {module}.{name} is not a MatGL model class")
    return cls


def _check_shapes_first(cls, init_args: dict, state: dict, folder: Path) -> None:
    """Build the network the saved arguments describe on torch's ``meta`` device (shapes, no memory) and
    compare it with the saved weights, before any real allocation: arguments that describe a network
    far larger than its weights (a damaged or crafted ``model.pt``) are an error naming the file, not
    an allocation without bound."""
    import torch

    # values that only set numbers (normalisation, bounds, thresholds) do not change shapes; the network's
    # own checks of them need real tensors, so the probe leaves them at their defaults
    numbers = ("data_mean", "data_std", "output_min", "metal_threshold", "metal_below")
    args = {k: v for k, v in init_args.items() if not str(k).startswith("@") and k not in numbers}
    try:
        with torch.device("meta"):
            probe = cls(**args)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad model.pt, said as such
        raise ValueError(f"{folder / 'model.pt'}: its arguments do not describe a {cls.__name__} "
                         f"({type(exc).__name__}: {exc})") from None
    own = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    wrong = [k for k, shape in own.items() if k in saved and saved[k] != shape]
    lacking = [k for k in own if k not in saved]
    if wrong or lacking:
        k = (wrong or lacking)[0]
        found = f"state.pt has {saved[k]}" if k in saved else "state.pt lacks it"
        raise ValueError(f"{folder}: model.pt describes a network whose {k} is {own[k]}, but {found} "
                         f"({len(wrong)} shape(s) differ, {len(lacking)} missing); the folder is damaged")


def load_folder(folder: Path):
    """The model saved in ``folder`` (MatGL's format), read weights-only; see the module docstring.

    Both checkpoint files are read here first, so a refusal names the file; a CGAT then goes through
    :meth:`CGAT.load` (itself weights-only) so that it keeps whatever that method adds. A model file
    this small (a few MB) is cheap to read twice.
    """
    files = {f: folder / f for f in FILES}
    missing = [f for f, p in files.items() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a saved model folder: no {', '.join(missing)}")
    try:
        meta = json.loads(files["model.json"].read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{files['model.json']}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{files['model.json']}: not a MatGL model description")  # noqa: TRY004 (bad file)
    cls = model_class(meta.get("@module"), meta.get("@class"), files["model.json"])
    init_args = read_plain(files["model.pt"], folder)
    state = read_plain(files["state.pt"], folder)
    if not isinstance(init_args, dict) or not isinstance(state, dict):
        raise ValueError(f"{folder}: model.pt and state.pt must hold dicts (init args, state dict)")  # noqa: TRY004
    from matgl_cgat.models import CGAT

    if issubclass(cls, CGAT):
        _check_shapes_first(cls, init_args, state, folder)
        return cls.load(folder)
    if getattr(cls, "__version__", 0) > meta.get("@model_version", 0):
        warnings.warn(f"{files['model.json']} was saved by an older {cls.__name__} version", UserWarning, stacklevel=3)
    try:
        args = {}
        for key, value in init_args.items():
            if isinstance(value, dict) and "@class" in value and "@module" in value:  # a nested MatGL model
                value = model_class(value["@module"], value["@class"], files["model.pt"])(**value["init_args"])
            if not key.startswith("@"):
                args[key] = value
        model = cls(**args)
        own = model.state_dict()
        # MatGL 4 derives AtomRef's identity-matrix cache (``.onehot``) that older checkpoints still carry
        # (MatGL's own loader ignores exactly that suffix); every other key must match
        state = {k: v for k, v in state.items() if k in own or not k.endswith(_DERIVED_BUFFERS)}
        model.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError, KeyError) as exc:
        raise ValueError(f"{folder}: the saved arguments or weights do not fit {cls.__name__} ({exc})") from None
    model.metadata = meta.get("metadata")
    return model
