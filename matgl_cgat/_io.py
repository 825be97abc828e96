"""Atomic file writes: readers (and an interrupted job's next run) see the old file or the whole new one."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """Permissions of an ordinary new file under the current umask (``mkstemp`` would leave 0600)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder (created if needed); on success it replaces ``path``.

    For writers that want a file name (``savefig``, ``dgl.save_graphs``): whatever they write appears
    under ``path`` whole or not at all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`), synced to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (the object is serialised in memory first)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


#: The files of a MatGL model folder.
MODEL_FILES = ("model.json", "model.pt", "state.pt")


def save_model_folder(write, path: str | Path) -> None:
    """Write a model folder so that readers never see a mix of old and new files.

    ``write(folder)`` writes the model files (e.g. MatGL's ``save``) into a fresh temporary folder
    beside ``path``. A folder holding only model files (or none) is then swapped in by two renames; a
    folder with other files in it (``"."`` say) gets each file replaced atomically, ``model.json``
    last, so an interrupted save there can leave new weights under the old description at worst.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        swappable = not path.exists() or (path.is_dir() and {p.name for p in path.iterdir()} <= set(MODEL_FILES)
                                          and path.resolve() != Path.cwd().resolve())
        if swappable:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp leaves 0700
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            for name in ("state.pt", "model.pt", "model.json"):
                os.replace(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
