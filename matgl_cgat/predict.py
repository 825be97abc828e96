"""Predictions for structure files with the shipped (or any saved) CGAT models: ``mgl-cgat predict``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from dataclasses import dataclass, field
from typing import NamedTuple

from matgl_cgat.data import DataError


def example_structures() -> dict:
    """Textbook crystals built with pymatgen: the default input of ``mgl-cgat predict``."""
    from pymatgen.core import Lattice

    from matgl_cgat._crystals import symmetric_structure

    return {
        "NaCl (rock salt)": symmetric_structure("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]),
        "Si (diamond)": symmetric_structure("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
        "GaAs (zincblende)": symmetric_structure("F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0] * 3, [0.25] * 3]),
        "SrTiO3 (perovskite)": symmetric_structure(
            "Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0.5] * 3, [0] * 3, [0.5, 0, 0]]
        ),
        "Cu (fcc)": symmetric_structure("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),
    }


def read_structure_files(paths: Sequence[str | Path], on_error: str = "raise",
                         skipped: list | None = None) -> dict:
    """``{id: Structure}`` from the files :func:`iter_structure_files` reads, all in memory."""
    return {sid: structure for sid, structure, _ in iter_structure_files(paths, on_error, skipped)}


#: Suffixes read record by record (the package's data formats), so inputs larger than memory stream.
RECORD_FILES = (".jsonl", ".jsonl.gz", ".json.bz2")


def may_carry_labels(paths) -> bool:
    """Whether any of these inputs can carry reference values beside its structures (JSON lines,
    Alexandria entries, also uncompressed ``.json``): a streamed table then has label columns."""
    return any(str(p).lower().endswith((*RECORD_FILES, ".json")) for p in paths)


def iter_structure_files(paths: Sequence[str | Path], on_error: str = "raise", skipped: list | None = None,
                         select=None, positions: dict | None = None,
                         parse: bool = True) -> Iterator[tuple[str, object, dict]]:
    """``(id, structure, labels)`` one at a time from structure files, in input order.

    Reads CIF, POSCAR/CONTCAR/.vasp, (ext)XYZ, JSON (a pymatgen structure dict, a list of them, or
    records with ``structure`` and ``mat_id``/``id``), the package's JSON lines (``.jsonl[.gz]``, what
    ``load_dataset`` reads; streamed, so a file larger than memory works), Alexandria ``.json.bz2``,
    and folders (every CIF in them, by name). Ids are file stems, ``stem:index`` in multi-structure
    files, or the record's own id. ``labels``: the numbers a record carries beside its structure (JSON
    lines), so a table can show the reference value of a model's property.

    Args:
        on_error: "raise" (default): :class:`DataError` naming the file (and record) for the first
            unreadable one; "skip": leave it out and append ``(where, reason)`` to ``skipped``.

        select: a function of a record's position in the whole input (0, 1, ...) saying whether to
            read it; records not selected are not even parsed (how each process of a screen over
            several takes its share).
        positions: filled with ``{id: position}`` of what is yielded (to merge parts in input order).
        parse: False: a JSON-lines record's structure comes as an :class:`UnparsedStructure` (its dict),
            parsed where it is converted (:func:`predict_rows` does it in its worker processes: building
            a pymatgen ``Structure`` is a third of the conversion's time, and a dict is cheaper to send).

    Raises:
        DataError: always for an id seen twice, within one file as across files: rows of a screening
            table are keyed by id, and a repeated id would silently stand for two crystals.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    seen: dict[str, str] = {}
    counter = _Selector(select)

    def fail(where: str, exc: Exception) -> None:
        error = exc if isinstance(exc, DataError) else DataError(
            f"{where}: cannot read a structure ({type(exc).__name__}: {exc})")
        if on_error == "raise":
            raise error from None
        if skipped is not None:
            skipped.append((where, str(error)))

    for raw in paths:
        path = Path(raw)
        try:
            records = _records_of(path, fail, counter, parse)
            for key, structure, labels, where in records:
                if key in seen:
                    raise DuplicateId(f"{where}: duplicate structure id {key!r} (first at {seen[key]}); ids key the "
                                      "rows of the table, so each must name one crystal")
                seen[key] = where
                if positions is not None:
                    positions[key] = counter.position
                yield key, structure, labels
        except DuplicateId:
            raise
        except Exception as exc:  # noqa: BLE001 - the parsers raise many types (pymatgen even warnings)
            fail(str(path), exc)


class DuplicateId(DataError):
    """An id seen twice in one screen's input: never skipped, whatever ``on_error`` says."""


class _Selector:
    """Counts records across every input and says which to read (see ``select``)."""

    def __init__(self, select):
        self.select, self.position = select, -1

    def take(self) -> bool:
        self.position += 1
        return self.select is None or bool(self.select(self.position))


class UnparsedStructure(NamedTuple):
    """A record's structure dict, not yet a ``Structure`` (see ``iter_structure_files(parse=False)``)."""

    data: dict
    where: str  # file, line and id, for the error if it cannot be parsed

    def parse(self):
        from matgl_cgat.data._sources import _structure_from_dict

        return _structure_from_dict(self.data, self.where)


def parsed(obj):
    """The structure of an item: parsed here if it came unparsed."""
    return obj.parse() if isinstance(obj, UnparsedStructure) else obj


def _records_of(path: Path, fail, counter: _Selector, parse: bool = True) -> Iterator[tuple[str, object, dict, str]]:
    """``(id, structure, labels, where)`` of one file or folder; per-record faults of record files go to
    ``fail`` (which raises or records a skip), whole-file faults are raised."""
    from pymatgen.core import Structure

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".cif" and p.is_file())
        if not files:
            raise DataError(f"{path}: a folder to predict must hold .cif files")
        for f in files:
            if not counter.take():
                continue
            try:
                yield f.stem, Structure.from_file(f), {}, str(f)
            except Exception as exc:  # noqa: BLE001 - pymatgen's CIF parser raises many types
                fail(str(f), exc)
        return
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    name = path.name.lower()
    if name.endswith(RECORD_FILES):
        yield from _record_file(path, fail, counter, parse)
    elif name.endswith((".xyz", ".extxyz")):
        from ase.io import iread

        for i, atoms in enumerate(iread(str(path), index=":")):  # Atoms kept: their pbc is a domain flag
            if counter.take():
                yield str(atoms.info.get("id", f"{path.stem}:{i}")), atoms, {}, f"{path}, frame {i}"
    elif name.endswith(".json"):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "entries" in doc:  # Alexandria's layout, uncompressed
            yield from _record_file(path, fail, counter)
            return
        docs = doc if isinstance(doc, list) else [doc]
        for i, d in enumerate(docs):
            if not counter.take():
                continue
            try:  # one bad item is that item's fault: the others are still read (and counted alike in
                # every process of a screen over several)
                sd = d.get("structure", d) if isinstance(d, dict) else d
                rid = (d.get("mat_id") or d.get("id")) if isinstance(d, dict) and "structure" in d else None
                key = str(rid or (path.stem if len(docs) == 1 else f"{path.stem}:{i}"))
                structure = Structure.from_dict(sd)
            except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for malformed dicts
                fail(f"{path}, item {i}", exc)
                continue
            yield key, structure, {}, f"{path}, item {i}"
    elif counter.take():  # CIF, POSCAR, CONTCAR, *.vasp and anything pymatgen recognises
        yield (path.stem if path.suffix else path.name), Structure.from_file(path), {}, str(path)


def _record_file(path: Path, fail, counter: _Selector, parse: bool = True) -> Iterator[tuple[str, object, dict, str]]:
    """Records of a JSON-lines or Alexandria file, read as ``load_dataset`` reads them, with no label
    required; numbers beside the structure are kept as labels."""
    from matgl_cgat.data._sources import ReadSpec, detect_format, iter_items, materialise

    spec = ReadSpec(())
    for item in iter_items(path, detect_format(path)):
        if not counter.take():  # another process's share: not parsed here
            continue
        record = None
        try:
            if item.kind == "json" and not parse:
                rid, structure, record = _unparsed_record(item, spec)
            else:
                rid, structure, _ = materialise(item, spec)
        except DataError as exc:
            fail(item.location, exc)
            continue
        labels = {}
        if item.kind == "json":
            record = record if record is not None else json.loads(item.payload)
            labels = {k: float(v) for k, v in record.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
        elif item.kind == "entry":
            labels = {k: float(v) for k, v in (item.payload.get("data") or {}).items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
        yield rid, structure, labels, item.location


def _unparsed_record(item, spec) -> tuple[str, UnparsedStructure, dict]:
    """A JSON line's id, structure dict and record, checked as :func:`materialise` checks them; the
    structure not parsed."""
    from matgl_cgat.data._sources import json_record

    rid, record = json_record(item, spec)
    if not isinstance(record.get(spec.structure_key), dict):
        raise DataError(f"{item.location} ({rid}): no {spec.structure_key!r} dict")
    return rid, UnparsedStructure(record[spec.structure_key], f"{item.location} ({rid})"), record


class MetalDecision(NamedTuple):
    """A metal gate's answer for one crystal, as ``predict_all`` rows carry it (``<model> metal``)."""

    metal: bool
    probability: float
    below: float  # the gap (eV) under which the gate's training labels counted as metals


class FidelityView:
    """One fidelity of a multi-fidelity CGAT, seen as a one-property model (a column of a table)."""

    def __init__(self, model, fidelity: str):
        self.model, self.column = model, model.fidelity_index(fidelity)
        self.fidelity = model.fidelities[self.column]
        card = dict(model.metadata or {}) if isinstance(getattr(model, "metadata", None), dict) else {}
        card["property"] = (card.get("label_columns") or {}).get(self.fidelity, card.get("property"))
        self.metadata = card
        self.sigma_head = model.sigma_head
        self.metal_head = getattr(model, "metal_head", None)
        self.metal_below = getattr(model, "metal_below", 0.1)
        self.novelty = getattr(model, "novelty", None)  # one check for every fidelity: the representation is shared

    def metal_decision(self, g):
        """(B, 1) decisions and probabilities of this fidelity's output, as ``CGAT.metal_decision``."""
        decided, probability = self.model.metal_decision(g)
        return decided[:, self.column : self.column + 1], probability[:, self.column : self.column + 1]

    def graph_converter(self):
        return self.model.graph_converter()

    def answers(self, g):
        """This fidelity's column of the model's one-pass answers (:meth:`CGAT.answers`)."""
        return self.model.answers(g).column(self.column)

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, g, return_sigma: bool = False):
        pred, sigma = self.model.outputs(g, return_sigma=return_sigma)  # (B, F): pick the column, then squeeze
        if return_sigma:
            return pred[:, self.column].squeeze(), sigma[:, self.column].squeeze()
        return pred[:, self.column].squeeze()


def by_fidelity(models: dict, fidelity: str | None = None) -> dict:
    """Models for a table: a multi-fidelity model becomes one column per fidelity (``name[hse]``), or
    only ``fidelity``'s; single-fidelity models pass through."""
    out = {}
    for name, model in models.items():
        names = getattr(model, "fidelities", None)
        if not names:
            out[name] = model
            continue
        for f in ([names[model.fidelity_index(fidelity)]] if fidelity else names):
            out[f"{name}[{f}]"] = FidelityView(model, f)
    if fidelity and len(out) == len(models) and not any(isinstance(m, FidelityView) for m in out.values()):
        raise ValueError(f"--fidelity {fidelity}: none of the models is a multi-fidelity model")
    return out


def property_of(model) -> str | None:
    return (getattr(model, "metadata", None) or {}).get("property")


#: Structures per batch: large enough that the network's matrix products dominate, small enough that a
#: batch of large cells stays far below a gigabyte.
BATCH_SIZE = 128


def nonmetals_only(card: dict) -> bool:
    """Whether a model card says its model decides no metal (trained on non-metals only)."""
    return isinstance(card, dict) and str(card.get("metal_decision", "")).lower().startswith("none")


def metal_companions(models: dict) -> dict:
    """``{model name: (companion name, companion model)}`` for each model that decides no metal (its card:
    trained on non-metals only) and names, as ``metal_decision_by``, a gap model with a metal gate: the
    table says where that companion calls a crystal a metal. The companion is the one among ``models``
    (by key or card name) when it is there, else loaded by name (a shipped model: local files only)."""
    out = {}
    for name, model in models.items():
        card = getattr(model, "metadata", None)
        by = card.get("metal_decision_by") if isinstance(card, dict) else None
        if not by or not nonmetals_only(card):
            continue
        found = next((m for n, m in models.items()
                      if n == by or (getattr(m, "metadata", None) or {}).get("name") == by), None)
        if found is None:
            import matgl

            found = matgl.load_model(by)
        if getattr(found, "metal_head", None) is None:
            raise ValueError(f"{name}: its card names {by} to decide metal or not, but {by} has no metal gate")
        out[name] = (by, found)
    return out


def predict_all(models: dict, structures: dict, references: dict | None = None, on_error: str = "raise",
                skipped: list | None = None, potential=None, potential_on_error: str | None = None,
                batch_size: int = BATCH_SIZE, strain_check: bool = False) -> list[dict]:
    """One row per structure: id, formula, then per model its prediction, sigma and domain flags.

    Row keys: ``<model>`` (value), ``<model> sigma`` (for models with an uncertainty head), ``<model>
    metal`` (a :class:`MetalDecision`, for models with a metal gate), ``<model> missing`` (why a
    Δ-model's value is None: its potential could not take the structure, with ``on_error="skip"`` or
    ``potential_on_error="skip"``, which applies to the Δ-models' potentials alone),
    ``<model> flags`` (:class:`~matgl_cgat.domain.DomainFlags` against that model's training domain).
    With ``references`` (``{structure id: {"mat_id", label: value}}``, see
    :func:`matgl_cgat._reference.find_in_data`) a row also gets ``reference_id`` and, per model, the
    reference value of the model's property as ``<model> label`` (empty when there is none).
    With ``strain_check`` (:mod:`matgl_cgat.continuity`), ``<model> strain``: the largest change of the
    answer under a 1% strain, added to sigma in quadrature and flagged where it exceeds the model's MAE.

    Batched (:func:`predict_rows`): each structure is converted once per distinct converter setting,
    and each model runs once per batch, every head fed from one representation.

    A structure no crystal can have (:class:`~matgl_cgat.graph.ImpossibleStructure`) raises
    :class:`DataError` naming it, or with ``on_error="skip"`` is left out and reported in ``skipped``.

    A Δ-model (its card records a potential anchor, :mod:`matgl_cgat.potentials`) predicts its
    potential's formation enthalpy plus its own output; ``potential`` is where to find that potential
    when it is not in MatGL's cache (a folder). A structure the potential cannot handle is an error
    naming it, or a skip.
    """
    items = ((sid, s, {}) for sid, s in structures.items())
    rows: list[dict] = []
    for chunk in predict_rows(models, items, references, on_error, skipped, potential, potential_on_error,
                              batch_size, strain_check=strain_check):
        rows.extend(chunk)
    return rows


def predict_rows(models: dict, items: Iterable[tuple[str, object, dict]], references: dict | None = None,
                 on_error: str = "raise", skipped: list | None = None, potential=None,
                 potential_on_error: str | None = None, batch_size: int = BATCH_SIZE,
                 progress=None, workers: int = 0, device=None, strain_check: bool = False) -> Iterator[list[dict]]:
    """:func:`predict_all` for a stream: ``(id, structure, labels)`` items in (as
    :func:`iter_structure_files` gives them), lists of rows out, one list per batch, in input order.

    ``labels`` of an item are reference values the input itself carries (``{property: value}``); they
    fill ``<model> label`` where the model's property is among them. ``progress``: called with the
    number of structures of each finished batch (e.g. a tqdm bar's ``update``).

    ``workers``: processes that check and convert structures (0: all in this process). With torch
    on one thread they convert the next batches while this process runs the networks; with more
    threads they share each batch between them while the networks wait, then the networks run
    alone, since threads that wait for a core held by a converting process stall their partners.
    Processes, not threads, for the conversion: it is many small Python operations. ``device``: where
    the networks run (the graphs are moved there; the models must be there already). ``strain_check``:
    each crystal is also probed under 1% strains (:mod:`matgl_cgat.continuity`; its graphs are built in
    the conversion processes, the copies whose network input differs run through the networks).

    Side effect: glibc is told to keep freed memory in this process for reuse (1.6x faster networks on
    CPU; the process keeps its peak memory); ``MGL_CGAT_ALLOCATOR=system`` before the first call
    switches that off (:mod:`matgl_cgat._allocator`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    import torch

    from matgl_cgat._allocator import keep_freed_memory
    from matgl_cgat.domain import TrainingDomain

    keep_freed_memory()  # 1.6x the networks' speed on CPU; before the workers fork, so they inherit it
    companions = metal_companions(models)
    every = {**models, **{f"\0{by}": m for by, m in companions.values()}}  # the companions' graphs too
    keys = {name: _converter_key(model) for name, model in every.items()}
    converters = {keys[name]: model.graph_converter() for name, model in every.items()}
    domains = {name: TrainingDomain.of_model(model) for name, model in models.items()}
    keep = any(_anchored(m) for m in models.values())  # a Δ-model's potential reads the input objects
    jobs = ((converters, chunk, on_error, domains, keep, strain_check) for chunk in _chunks(items, batch_size))
    if workers:
        import multiprocessing as mp

        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        pool = context.Pool(workers, initializer=_one_thread)
        if torch.get_num_threads() > 1:
            # the networks use every core: the processes convert a batch between them while the networks
            # wait, then the networks run alone (overlapping the two, threads wait on busy cores)
            prepared = (sub for job in jobs for sub in pool.map(_prepare_batch, _split(job, workers)))
        else:  # one thread: the processes convert the next batches while this one runs the networks
            prepared = _ahead(pool, jobs, 2 * workers)
    else:
        pool, prepared = None, map(_prepare_batch, jobs)
    try:
        for batch in prepared:
            if batch.error is not None:
                raise batch.error
            if skipped is not None:
                skipped.extend(batch.skipped)
            rows = _answer_batch(models, keys, batch, references, on_error, potential, potential_on_error, device)
            _mark_companion_metals(rows, companions, keys, batch, device)
            if progress is not None:
                progress(batch.size)
            yield rows
    finally:
        if pool is not None:
            pool.terminate()


def _ahead(pool, jobs: Iterator, depth: int) -> Iterator[PreparedBatch]:
    """Prepared batches in input order, at most ``depth`` ahead of the consumer: unlike ``Pool.imap``,
    which reads its whole input at once, this keeps a screen of a file larger than memory streaming."""
    from collections import deque

    pending: deque = deque()
    for job in jobs:
        pending.append(pool.apply_async(_prepare_batch, (job,)))
        if len(pending) >= depth:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _split(job, parts: int) -> list:
    converters, items, on_error, domains, keep, strain_check = job
    size = max(1, -(-len(items) // parts))
    return [(converters, items[i : i + size], on_error, domains, keep, strain_check)
            for i in range(0, len(items), size)]


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _converter_key(model) -> tuple:
    return tuple(sorted(model.graph_converter().settings().items()))


@dataclass
class PreparedBatch:
    """A batch checked and converted (in a worker process or here), ready for the networks."""

    size: int  # structures read, kept or skipped
    rows: list[dict] = field(default_factory=list)  # {"id", "formula"} of the kept ones
    originals: list = field(default_factory=list)  # their input objects, kept where a Δ-model's potential reads them
    flags: list[dict] = field(default_factory=list)  # {model name: DomainFlags} per kept one
    labels: list[dict] = field(default_factory=list)  # reference values the input carries
    graphs: dict = field(default_factory=dict)  # converter key -> the kept ones' graphs, batched (one
    # object to send back from a worker: pickling a list of graphs costs more than converting them)
    skipped: list = field(default_factory=list)
    error: Exception | None = None  # with on_error="raise": the first bad structure's error
    strained: dict = field(default_factory=dict)  # converter key -> StrainedGraphs (with the strain check)


def _prepare_batch(job) -> PreparedBatch:
    from matgl_cgat.domain import domain_flags, formula_of, inspect_structure
    from matgl_cgat.graph import batch_graphs

    converters, items, on_error, domains, keep, strain_check = job
    out = PreparedBatch(len(items))
    graphs: dict = {key: [] for key in converters}
    as_converted: list = []  # the kept structures as converted, for the strain check
    for sid, s, labels in items:  # what can be wrong with the input: checked once per structure
        try:
            converted, geometry = {}, None
            s = parsed(s)
            for key, c in converters.items():
                if geometry is None and hasattr(c, "get_graph_and_contact"):  # one neighbour search serves both
                    g, _, _, checked, contact = c.get_graph_and_contact(s)
                    geometry, converted[key] = inspect_structure(s, checked, contact), g
                else:
                    geometry = geometry or inspect_structure(s)
                    converted[key] = c.get_graph(geometry.structure)[0]
            geometry = geometry or inspect_structure(s)
        except (ValueError, TypeError) as exc:  # ImpossibleStructure is a ValueError
            error = exc if isinstance(s, UnparsedStructure) else DataError(f"structure {sid!r} ({formula_of(s)}): {exc}")
            if on_error == "raise":
                out.error = error
                return out
            out.skipped.append((sid, str(error)))
            continue
        for key, g in converted.items():
            graphs[key].append(g)
        as_converted.append(geometry.structure)
        out.rows.append({"id": sid, "formula": formula_of(s)})
        out.originals.append(s if keep else None)
        out.flags.append({name: domain_flags(geometry, d) for name, d in domains.items()})
        out.labels.append(labels or {})
    if out.rows:
        out.graphs = {key: batch_graphs(gs) for key, gs in graphs.items()}
        if strain_check:
            from matgl_cgat.continuity import strained_graphs

            out.strained = {key: strained_graphs(converters[key], as_converted, graphs[key]) for key in converters}
    return out


def _answer_batch(models: dict, keys: dict, batch: PreparedBatch, references, on_error, potential,
                  potential_on_error, device=None) -> list[dict]:
    import torch

    rows = batch.rows
    if not rows:
        return rows
    graphs = batch.graphs
    if device is not None and str(device) != "cpu":
        graphs = {key: g.to(device) for key, g in graphs.items()}
    kept = {row["id"]: s for row, s in zip(rows, batch.originals)}
    baselines = _anchor_values(models, kept, potential_on_error or on_error, potential)
    for name, model in models.items():  # a failing model is the model's error, never a skipped input
        model.eval()
        with torch.no_grad():
            answers = model.answers(graphs[keys[name]])
        answers = type(answers)(*(None if t is None else t.cpu() for t in
                                  (answers.value, answers.sigma, answers.metal, answers.metal_probability,
                                   answers.novelty)))
        check = getattr(model, "novelty", None)
        spread = _strain_spread(model, answers, batch.strained.get(keys[name]), device)
        if spread is not None:
            from matgl_cgat.continuity import own_mae, widened_sigma

            limit = own_mae(model)  # once per model, not per row
        if answers.value.shape[1] != 1:  # a column per crystal is all a table has room for
            raise ValueError(f"model {name}: {answers.value.shape[1]} outputs per crystal, where a table holds one "
                             "value per model (multi-fidelity models are shown one column per fidelity; "
                             "a multi-output model only element by element in Python)")
        prop = property_of(model)
        for i, (row, flags) in enumerate(zip(rows, batch.flags)):
            sid = row["id"]
            why_not = baselines[name][1].get(sid) if name in baselines else None
            if why_not:  # a Δ-model whose potential cannot take this input: its value alone stays empty,
                row[name] = None  # the other models still answer
                row[f"{name} missing"] = why_not
            else:
                if answers.sigma is not None:
                    row[f"{name} sigma"] = float(answers.sigma[i, 0])
                if answers.metal is not None:
                    row[f"{name} metal"] = MetalDecision(bool(answers.metal[i, 0]), float(answers.metal_probability[i, 0]),
                                                         float(getattr(model, "metal_below", 0.1)))
                row[name] = float(answers.value[i, 0]) + (baselines[name][0][sid] if name in baselines else 0.0)
            row[f"{name} flags"] = flags[name]
            if answers.novelty is not None and check is not None:
                novelty = float(answers.novelty[i])
                row[f"{name} novelty"] = novelty
                row[f"{name} flags"] = flags[name].with_novelty(novelty, float(check.threshold), float(check.widen))
            if spread is not None and row[name] is not None:
                row[f"{name} strain"] = float(spread[i, 0])
                if f"{name} sigma" in row:
                    row[f"{name} sigma"] = widened_sigma(row[f"{name} sigma"], float(spread[i, 0]))
                row[f"{name} flags"] = row[f"{name} flags"].with_strain(float(spread[i, 0]), limit)
            if references is not None or batch.labels[i]:
                own = batch.labels[i].get(prop, "") if prop else ""
                row[f"{name} label"] = own if own != "" else (references or {}).get(sid, {}).get(prop, "")
    if references is not None:
        for row in rows:
            sid = row["id"]
            row["reference_id"] = references.get(sid, {}).get("mat_id", "")
            row["measured"] = {k: references[sid][k] for k, _, _ in MEASURED if k in references.get(sid, {})}
    return rows


def _strain_spread(model, answers, strained, device):
    """(N, 1) largest change of each crystal's answer under the strain probes, or None without the check."""
    if strained is None:
        return None
    from matgl_cgat.continuity import strain_spread

    values = None
    if strained.graphs is not None:
        g = strained.graphs.to(device) if device is not None and str(device) != "cpu" else strained.graphs
        import torch

        with torch.no_grad():
            values = model.answers(g).value.cpu()
    return strain_spread(answers.value, values, strained.owner)


def _mark_companion_metals(rows: list[dict], companions: dict, keys: dict, batch: PreparedBatch, device) -> None:
    """Add to a non-metal-only model's flags where its companion gap model calls the crystal a metal."""
    if not rows or not companions:
        return
    import torch

    decided: dict = {}
    for name, (by, companion) in companions.items():
        if by not in decided:
            g = batch.graphs[keys[f"\0{by}"]]
            if device is not None and str(device) != "cpu":
                g = g.to(device)
                companion.to(device)  # a companion loaded behind the scenes starts on the CPU
            companion.eval()
            with torch.no_grad():
                said = companion.answers(g)
            decided[by] = (said.metal[:, 0].cpu(), said.metal_probability[:, 0].cpu())
        metal, probability = decided[by]
        for i, row in enumerate(rows):
            if bool(metal[i]) and row.get(f"{name} flags") is not None:
                row[f"{name} flags"] = row[f"{name} flags"].with_companion_metal(by, float(probability[i]))


def _anchor_values(models: dict, structures: dict, on_error: str, potential) -> dict:
    """``{model name: ({structure id: anchor value}, {structure id: why none})}`` for the Δ-models."""
    out = {}
    for name, model in models.items():
        card = getattr(model, "metadata", None)
        if not (isinstance(card, dict) and "anchor" in card):
            continue
        from matgl_cgat.potentials import anchor_of

        ids = list(structures)
        values, why_not = anchor_of(model).values(list(structures.values()), ids, potential=potential,
                                                   on_error=on_error)
        out[name] = (dict(zip(ids, map(float, values))), why_not)
    return out


#: Files beside ``mp_gap.jsonl.gz`` whose values for the same crystals the demo shows too.
MEASURED_FILES = ("hifi_eform.jsonl.gz", "exp_gap.jsonl.gz")
#: Measured quantities shown in their own column wherever the shared data has them: (label, name, units).
MEASURED = (("gap_exp", "gap", "eV"), ("e_form_exp", "ΔHf", "eV/atom"))


def units_of(model) -> str:
    return (getattr(model, "metadata", None) or {}).get("units", "")


#: Decimals written to CSV/JSON: 0.1 meV(/atom) or 0.1 meV of a gap, far below any model's error.
DECIMALS = 4


def _rounded(value):
    return round(value, DECIMALS) if isinstance(value, float) else value


def _flags(row: dict, name: str):
    return row.get(f"{name} flags")


def _anchored(model) -> bool:
    card = getattr(model, "metadata", None)
    return isinstance(card, dict) and "anchor" in card


def table_columns(models: dict, labelled: bool = False, referenced: bool = False, strain: bool = False) -> list[str]:
    """The CSV columns of a table of these models, fixed by the models alone (a streamed table writes its
    header before the first row): ``id``, ``formula``, then per model ``<model> (<units>)``, ``<model>
    missing`` (Δ-models), ``<model> sigma (<units>)`` (uncertainty head), ``<model> label (<units>)``
    (``labelled``), ``<model> novelty`` (representation-domain check), ``<model> strain (<units>)`` (the strain
    check, ``strain``), ``<model> metal`` and ``<model> metal probability`` (metal gate), ``<model> flags``;
    then ``reference_id`` and the measured values (``referenced``)."""
    columns = ["id", "formula"]
    for n, m in models.items():
        unit = f" ({units_of(m)})" if units_of(m) else ""
        columns.append(f"{n}{unit}")
        if _anchored(m):
            columns.append(f"{n} missing")
        if getattr(m, "sigma_head", None) is not None:
            columns.append(f"{n} sigma{unit}")
        if getattr(m, "novelty", None) is not None:
            columns.append(f"{n} novelty")
        if strain:
            columns.append(f"{n} strain{unit}")
        if labelled or referenced:
            columns.append(f"{n} label{unit}")
        if getattr(m, "metal_head", None) is not None:
            columns += [f"{n} metal", f"{n} metal probability"]
        columns.append(f"{n} flags")
    if referenced:
        columns.append("reference_id")
        columns += [f"measured {key} ({unit})" for key, _, unit in MEASURED]
    return columns


def flat_row(r: dict, models: dict) -> dict:
    """One row of :func:`predict_all` as CSV cells (see :func:`table_columns`), values rounded."""
    line = {"id": r["id"], "formula": r["formula"]}
    for n, m in models.items():
        unit = f" ({units_of(m)})" if units_of(m) else ""
        line[f"{n}{unit}"] = "" if r[n] is None else _rounded(r[n])
        if f"{n} missing" in r or _anchored(m):
            line[f"{n} missing"] = r.get(f"{n} missing", "")
        if f"{n} sigma" in r:
            line[f"{n} sigma{unit}"] = _rounded(r[f"{n} sigma"])
        if f"{n} novelty" in r:
            line[f"{n} novelty"] = round(r[f"{n} novelty"], 2)
        if f"{n} strain" in r:
            line[f"{n} strain{unit}"] = _rounded(r[f"{n} strain"])
        if f"{n} label" in r:
            line[f"{n} label{unit}"] = _rounded(r[f"{n} label"])
        if f"{n} metal" in r:
            line[f"{n} metal"] = "yes" if r[f"{n} metal"].metal else "no"
            line[f"{n} metal probability"] = _rounded(r[f"{n} metal"].probability)
        flags = _flags(r, n)
        line[f"{n} flags"] = "; ".join(flags.messages()) if flags is not None else ""
    if "reference_id" in r:
        line["reference_id"] = r["reference_id"]
        for key, _, unit in MEASURED:
            line[f"measured {key} ({unit})"] = _rounded(r.get("measured", {}).get(key, ""))
    return line


def json_row(r: dict, models: dict) -> dict:
    """One row of :func:`predict_all` as a JSON object: ``{"id", "formula", <model>: {"value", "sigma",
    "novelty", "strain", "label", "metal", "metal_probability", "missing", "flags": [...]}, ...}``."""
    item = {"id": r["id"], "formula": r["formula"]}
    for n in models:
        entry = {"value": _rounded(r[n])}
        if f"{n} missing" in r:
            entry["missing"] = r[f"{n} missing"]
        if f"{n} sigma" in r:
            entry["sigma"] = _rounded(r[f"{n} sigma"])
        if f"{n} novelty" in r:
            entry["novelty"] = round(r[f"{n} novelty"], 2)
        if f"{n} strain" in r:
            entry["strain"] = _rounded(r[f"{n} strain"])
        if f"{n} label" in r:
            entry["label"] = _rounded(r[f"{n} label"]) if r[f"{n} label"] != "" else None
        if f"{n} metal" in r:
            entry["metal"], entry["metal_probability"] = r[f"{n} metal"].metal, _rounded(r[f"{n} metal"].probability)
        flags = _flags(r, n)
        entry["flags"] = flags.messages() if flags is not None else []
        item[n] = entry
    if "reference_id" in r:
        item["reference_id"] = r["reference_id"] or None
    if "measured" in r:
        item["measured"] = {k: _rounded(v) for k, v in r["measured"].items()}
    return item


def format_rows(rows: list[dict], models: dict, fmt: str) -> str:
    """Rows as "csv", "json" or an aligned "table", with units in the headers and rounded values.

    CSV: the columns of :func:`table_columns` (domain messages joined by ``; ``); JSON: the objects of
    :func:`json_row` under ``predictions``, with ``units`` per model.
    """
    if fmt == "json":
        return json.dumps({"units": {n: units_of(m) for n, m in models.items()},
                           "predictions": [json_row(r, models) for r in rows]}, indent=2)
    if fmt == "csv":
        table = [flat_row(r, models) for r in rows]
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for line in table for k in line)) or ["id", "formula"]  # every row's
        writer = csv.DictWriter(buf, fieldnames=fields, restval="")  # columns, in first-seen order
        writer.writeheader()
        writer.writerows(table)
        return buf.getvalue()
    labelled = any(f"{n} label" in r for r in rows for n in models)
    with_sigma = any(f"{n} sigma" in r for r in rows for n in models)

    gated = [r[f"{n} metal"] for r in rows for n in models if f"{n} metal" in r]
    width = 6 + (8 if with_sigma else 0)  # "+0.000 ± 0.000"; a gate's "metal p 0.94" shares the column
    width = max(width, 12) if gated else width

    def cell(r: dict, n: str) -> str:
        decision = r.get(f"{n} metal")
        if r[n] is None:  # a Δ-model whose potential could not take this structure (see the notes)
            text = "n/a"
        elif decision is not None and decision.metal:  # the gate decided: its probability, not a gap and a sigma
            text = f"metal p {decision.probability:.2f}"
        elif f"{n} sigma" in r:
            text = f"{r[n]:+.3f} ± {r[f'{n} sigma']:.3f}"
        else:
            text = f"{r[n]:+.3f}"
        text = text.ljust(width)
        label = r.get(f"{n} label", "")
        return text + (f" ({label:+.3f})" if label != "" else "    " if labelled else "")

    def domain(r: dict) -> str:
        shorts = {n: f.short() for n in models if (f := _flags(r, n)) is not None}
        distinct = set(shorts.values())
        if len(distinct) <= 1:
            return distinct.pop() if distinct else "-"
        return "; ".join(f"{n}: {v}" for n, v in shorts.items() if v != "-")

    headers = ["structure", "formula"] + [f"{n} ({units_of(m)})" for n, m in models.items()] + ["domain flags"]
    table = [[r["id"], r["formula"]] + [cell(r, n) for n in models] + [domain(r)] for r in rows]
    if any("reference_id" in r for r in rows):
        headers.append("in mp_gap")
        table = [line + [r.get("reference_id", "") or "-"] for line, r in zip(table, rows)]
    if any(r.get("measured") for r in rows):
        headers.append("measured")
        table = [line + [", ".join(f"{name} {r['measured'][k]:+.3f} {unit}" for k, name, unit in MEASURED
                                   if k in r.get("measured", {})) or "-"] for line, r in zip(table, rows)]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [headers, *table]]
    if with_sigma:
        lines.append("(± sigma: the model's standard deviation for this crystal, errors modelled as Laplace: the 68% "
                     "interval is ± 0.81 sigma, the 95% one ± 2.12 sigma; measured coverage in the model card)")
    if gated:
        below = " / ".join(sorted({f"{d.below:g}" for d in gated}))
        lines.append(f"(metal p: the model's metal gate calls the crystal a metal (gap below {below} eV) with "
                     "probability p; its threshold was placed on validation; the card gives both error rates)")
    if labelled and any("reference_id" in r for r in rows):
        lines.append("(in brackets: the reference value of the model's own property for the same crystal in the shared "
                     "mp_gap data (DFT; measured for the Exp- models), matched with pymatgen's StructureMatcher)")
    elif labelled:
        lines.append("(in brackets: the value of the model's own property that the input record carries)")
    if any(r.get("measured") for r in rows):
        lines.append("(measured: the experimental band gap (exp_gap.jsonl.gz) and formation enthalpy (hifi_eform.jsonl.gz) "
                     "of the same crystal where the shared data has one)")
    for r in rows:
        for n in models:
            if f"{n} missing" in r:
                lines.append(f"(n/a: {n} has no value here; {r[f'{n} missing']})")
    if any(r.get(f"{n} flags") for r in rows for n in models):
        lines.append("(domain flags: Xx(n) = element in only n training structures; short-contact = atoms closer than "
                     "0.6 of their covalent bond length; V/atom = volume outside the training range; 2D/1D = reduced "
                     "periodicity; domain? = the model stores no training domain; novel=x = the model's representation of the "
                     "crystal lies x times a typical crystal's distance from its training crystals, its sigma widened; "
                     "metal-by-M = the gap model M calls it a metal, and this model answers for non-metals only; "
                     "strain=x = a 1% strain moves the answer by x, more than the model's MAE: the crystal sits near a "
                     "neighbour-shell boundary, and x is added to its sigma)")
    return "\n".join(lines)


def predict_table(models, source, *, on_error: str = "raise", batch_size: int = BATCH_SIZE,
                  workers: int | None = None, threads: int | None = None, potential=None,
                  progress: bool = False, strain_check: bool = False):
    """The screening table of ``mgl-cgat predict`` as a pandas ``DataFrame``, one row per crystal.

    Args:
        models: a model, a name or folder (``"CGAT-PBE-BandGap"``), a list of them, or ``{column name:
            model}``; multi-fidelity models give one column per fidelity.
        source: a file or folder :func:`iter_structure_files` reads, a list of them, ``{id: structure}``,
            or a list of pymatgen ``Structure`` / ASE ``Atoms`` (ids ``"0"``, ``"1"``, ...).
        on_error: "raise" or "skip" (the skipped inputs are in ``table.attrs["skipped"]``).
        workers, threads: conversion processes and torch threads; None chooses them from the cores
            free now (:func:`matgl_cgat._parallel.choose_parallelism`); torch's thread count is restored
            afterwards.
        potential: where a Δ-model's potential is, when not in MatGL's cache.
        progress: a progress bar on stderr.
        strain_check: probe every crystal under 1% strains (:mod:`matgl_cgat.continuity`): a column
            ``<model> strain`` with the largest change of its answer, added to sigma; flagged where it
            exceeds the model's MAE. Costs the strained copies' graphs, and network passes for the
            copies whose input differs.

    Returns:
        Columns of :func:`table_columns`: ``id``, ``formula``, per model the value with its units in
        the name, ``sigma``, ``label`` (where the input carries the model's property), ``metal`` and
        ``metal probability`` (gated models) and ``flags``.
    """
    import sys

    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from matgl_cgat._parallel import choose_parallelism

    models = by_fidelity(_as_models(models))
    skipped: list = []
    if isinstance(source, dict):
        items, labelled = ((str(k), s, {}) for k, s in source.items()), False
    elif hasattr(source, "lattice") or hasattr(source, "get_cell"):  # one Structure or Atoms
        items, labelled = iter([("0", source, {})]), False
    elif isinstance(source, (str, Path)):
        items, labelled = iter_structure_files([source], on_error, skipped, parse=False), may_carry_labels([source])
    elif (source := list(source)) and all(isinstance(x, (str, Path)) for x in source):  # a generator is read once
        items = iter_structure_files(list(source), on_error, skipped, parse=False)
        labelled = may_carry_labels(source)
    else:
        items, labelled = ((str(i), s, {}) for i, s in enumerate(source)), False
    chosen = choose_parallelism() if workers is None or threads is None else None
    before = torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else chosen.threads)
    bar = tqdm(desc="predict", unit=" structures", file=sys.stderr, disable=not progress)
    try:
        rows = [flat_row(r, models)
                for chunk in predict_rows(models, items, on_error=on_error, skipped=skipped, potential=potential,
                                          batch_size=batch_size, progress=bar.update, strain_check=strain_check,
                                          workers=workers if workers is not None else chosen.workers)
                for r in chunk]
    finally:
        bar.close()
        torch.set_num_threads(before)
    table = pd.DataFrame(rows, columns=table_columns(models, labelled, strain=strain_check))
    table.attrs["skipped"] = skipped
    table.attrs["units"] = {n: units_of(m) for n, m in models.items()}
    return table


def _as_models(models) -> dict:
    from matgl_cgat.pretrained import load_model

    if isinstance(models, dict):
        return models
    if isinstance(models, (str, Path)) or not isinstance(models, (list, tuple)):
        models = [models]
    out = {}
    for m in models:
        name = Path(m).name if isinstance(m, (str, Path)) else (getattr(m, "metadata", None) or {}).get("name", "model")
        if name in out:
            raise ValueError(f"two models named {name!r}: pass {{column name: model}} to tell them apart")
        out[name] = load_model(str(m)) if isinstance(m, (str, Path)) else m
    return out
