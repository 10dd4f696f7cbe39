"""The HardwareImage: everything a SMALL chip must hold to run one compiled network.

An image is a folder with ``image.json`` (the description, small and readable) and
``image.npz`` (the arrays, read with ``allow_pickle=False``). ``docs/hardware-image.md`` is the
normative schema; this module is the only code that reads or writes the files, and
:meth:`HardwareImage.validate` checks every rule the document states, so a simulator or a
generator handed an image can trust it.

Addresses: tile ``t`` in ``[0, n_tiles)``, row ``r`` in ``[0, rows)``, column ``c`` in
``[0, cols)``; a *column address* is ``t * cols + c`` (the address a neuron's events carry).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from small.errors import FileFormatError
from small.fileio import atomic_output, json_text, read_npz, write_npz

from small.schema import check

from .schemas import IMAGE_SCHEMA

FORMAT = "small-hardware-image"
VERSION = 1
TARGETS = ("digital", "memristive")

# Column kinds and neuron model codes as stored in ``col_kind`` / ``col_model``.
COL_UNUSED, COL_NEURON, COL_PARTIAL = 0, 1, 2
MODEL_CODES = {"lif": 1, "cuba_lif": 2, "if": 3, "li": 4, "alif": 5, "cuba_li": 6}
MODEL_NAMES = {code: name for name, code in MODEL_CODES.items()}
NON_SPIKING_MODELS = (MODEL_CODES["li"], MODEL_CODES["cuba_li"])
"""Models whose columns never spike: their membrane is their output (a readout)."""
CUBA_MODELS = (MODEL_CODES["cuba_lif"], MODEL_CODES["cuba_li"])
"""Models with a synaptic current ``i`` between the column sum and the membrane."""
RESET_CODES = {"zero": 0, "subtract": 1}
FIRE_CODES = {">": 0, ">=": 1}
"""``col_fire``: a spiking column fires when ``v > threshold + b`` (0) or ``v >= threshold + b`` (1)."""

# Per-column neuron parameters, in hardware units (docs/architecture.md).
NEURON_PARAMS = ("alpha", "alpha_syn", "alpha_adapt", "leak", "v_init", "threshold", "v_reset", "adapt", "bias")


@dataclass(frozen=True)
class Arithmetic:
    """Fixed-point format of the digital twin's neurons (``docs/architecture.md``)."""

    v_bits: int = 24
    """Width of membrane, synaptic current and adaptation state (signed, saturating)."""
    frac_bits: int = 8
    """Fraction bits below one weight level: a weight w adds ``w << frac_bits`` to the state."""
    decay_bits: int = 16
    """Fraction bits of the decay factors: alpha = ``alpha_q / 2**decay_bits``."""
    input_bits: int = 8
    """Width of a host input event's signed payload."""
    refractory_bits: int = 8
    """Width of the refractory counter."""

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class HardwareImage:
    """A compiled network (see ``docs/hardware-image.md`` for every field).

    ``meta`` is the JSON description; ``arrays`` the named arrays. Use :func:`load_image` and
    :meth:`save` rather than building one by hand; the compiler (``compiler/mapper.py``) makes
    them.
    """

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    # -- convenient views -----------------------------------------------------------------
    @property
    def target(self) -> str:
        return self.meta["target"]

    @property
    def rows(self) -> int:
        return int(self.meta["tile"]["rows"])

    @property
    def cols(self) -> int:
        return int(self.meta["tile"]["cols"])

    @property
    def levels(self) -> int:
        return int(self.meta["levels"])

    @property
    def n_tiles(self) -> int:
        return int(self.meta["n_tiles"])

    @property
    def arithmetic(self) -> Arithmetic:
        return Arithmetic(**self.meta["arithmetic"])

    @property
    def delay_slots(self) -> int:
        return int(self.meta["delay_slots"])

    def weights(self) -> np.ndarray:
        """Signed integer weights ``g_pos - g_neg`` as programmed, ``[tiles, rows, cols]``."""
        return self.arrays["g_pos"].astype(np.int32) - self.arrays["g_neg"].astype(np.int32)

    def effective_levels(self) -> tuple[np.ndarray, np.ndarray]:
        """Device levels after stuck devices override what was programmed."""
        pos, neg = self.arrays["g_pos"].astype(np.int32), self.arrays["g_neg"].astype(np.int32)
        if "stuck_pos" in self.arrays:
            sp_, sn = self.arrays["stuck_pos"], self.arrays["stuck_neg"]
            pos = np.where(sp_ >= 0, sp_, pos)
            neg = np.where(sn >= 0, sn, neg)
        return pos, neg

    def conductance_range(self) -> tuple[float, float]:
        """``(G_min, G_max)`` in siemens that a memristive image's levels map onto (``device``)."""
        d = self.meta.get("device") or {}
        return float(d.get("g_min_uS", 0.1)) * 1e-6, float(d.get("g_max_uS", 25.0)) * 1e-6

    def conductances(self) -> tuple[np.ndarray, np.ndarray]:
        """G+ and G- of every device as programmed (siemens, ``[tiles, rows, cols]``):
        ``G_min + level (G_max - G_min) / (L - 1)``, stuck devices at their level."""
        g_min, g_max = self.conductance_range()
        dG = (g_max - g_min) / (self.levels - 1)
        pos, neg = self.effective_levels()
        return g_min + pos * dG, g_min + neg * dG

    def neuron_addresses(self) -> np.ndarray:
        """Column address of every neuron column, ascending: the chip's neuron order ``k``."""
        return np.flatnonzero(self.arrays["col_kind"].reshape(-1) == COL_NEURON)

    def addresses(self, population: str) -> np.ndarray:
        """Column address ``tile * cols + col`` of each neuron of ``population``, in population order."""
        a = self.arrays
        return a[f"pop/{population}/tile"].astype(np.int64) * self.cols + a[f"pop/{population}/col"]

    def home_columns(self) -> np.ndarray:
        """For every column address, the address of the neuron column its current feeds: a
        partial-sum column's ``merge_to``, every other column itself (``[tiles * cols]``)."""
        kind = self.arrays["col_kind"].reshape(-1)
        return np.where(kind == COL_PARTIAL, self.arrays["merge_to"].reshape(-1), np.arange(kind.size))

    def route_sources(self, table: str = "route") -> np.ndarray:
        """The source of every entry of a routing table, in table order: the column address for
        ``"route"`` (the router's table), the input element for ``"input"`` (the input map)."""
        ptr = self.arrays[f"{table}_ptr"]
        return np.repeat(np.arange(ptr.size - 1), np.diff(ptr))

    def routes(self, source: int) -> list[tuple[int, int, int]]:
        """Destinations ``(tile, row, delay)`` of the neuron at column address ``source``."""
        a, b = self.arrays["route_ptr"][source], self.arrays["route_ptr"][source + 1]
        return list(zip(self.arrays["route_tile"][a:b].tolist(), self.arrays["route_row"][a:b].tolist(),
                        self.arrays["route_delay"][a:b].tolist()))

    # -- files ----------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> None:
        """Write ``image.npz`` then ``image.json`` into an existing ``folder`` (each atomically).

        ``image.json`` records the SHA-256 of ``image.npz`` (``arrays_sha256``) and of its own
        content (``json_sha256``, :func:`json_checksum`), so that :func:`load_image` names a
        corrupt archive or a hand-edited description as such.
        """
        folder = Path(folder)
        self.validate()
        write_npz(folder / "image.npz", self.arrays)
        meta = {k: v for k, v in self.meta.items() if k != "json_sha256"}
        meta["arrays_sha256"] = hashlib.sha256((folder / "image.npz").read_bytes()).hexdigest()
        meta["json_sha256"] = json_checksum(meta)
        self.meta = meta
        with atomic_output(folder / "image.json") as tmp:
            tmp.write_text(json_text(meta))

    # -- validation -----------------------------------------------------------------------
    def validate(self, source: str | os.PathLike | None = None) -> "HardwareImage":
        """Check ``meta`` against :data:`~compiler.schemas.IMAGE_SCHEMA`, then the arrays against
        ``meta``; raise :class:`FileFormatError` naming the problem (and ``source``, the file)."""
        what = "hardware image" + (f" {source}" if source is not None else "")
        check(IMAGE_SCHEMA, self.meta, what)
        _Validator(self, what).run()
        return self


def json_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of ``meta`` without its ``json_sha256`` field, as canonical JSON (keys sorted, no
    spaces): a re-indented file keeps its checksum, a changed value does not."""
    body = {k: v for k, v in meta.items() if k != "json_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def load_image(folder: str | os.PathLike) -> HardwareImage:
    """Read and validate the image in ``folder`` (a ``small compile -o`` folder).

    ``image.json`` and ``image.npz`` are read from one folder even while another SMALL run swaps a
    new build in under the same name (:func:`small.fileio.atomic_directory`): both are opened
    through the folder as it was when the read began, so a reader never pairs one build's
    description with another's arrays; if that folder is removed before the arrays are opened
    (the writer cleaning up after its swap), the read starts again on the new build.
    """
    folder = Path(folder)
    jpath = folder / "image.json"
    if not folder.is_dir():
        raise FileFormatError(f"build folder {str(folder)!r} does not exist: run `small compile ... -o {folder}` first")
    if not jpath.is_file():
        raise FileFormatError(f"{str(folder)!r} holds no image.json: it is not a `small compile` output folder")
    for _ in range(_SWAPS_TOLERATED):
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return _load_image_at(folder, dir_fd)
        except _Replaced:
            continue
        finally:
            os.close(dir_fd)
    raise FileFormatError(f"build folder {str(folder)!r} was replaced {_SWAPS_TOLERATED} times while it was read: "
                          "wait until the SMALL runs writing it end, then run this again")


#: How often :func:`load_image` starts again when the build it reads is replaced under it.
_SWAPS_TOLERATED = 5


class _Replaced(Exception):
    """The folder being read was swapped out and removed by another SMALL run."""


def _load_image_at(folder: Path, dir_fd: int) -> HardwareImage:
    """:func:`load_image` of the folder open as ``dir_fd`` (``folder`` names it in messages)."""
    def opener(name: str, flags: int) -> int:
        return os.open(name, flags, dir_fd=dir_fd)

    def missing(what: str) -> Exception:
        """_Replaced if ``folder`` is no longer the folder open as ``dir_fd``, else the error ``what``."""
        held, now = os.stat(dir_fd), os.stat(folder) if folder.is_dir() else None
        return _Replaced() if now is None or (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino) \
            else FileFormatError(what)

    jpath = folder / "image.json"
    try:
        with open("image.json", "rb", opener=opener) as fh:
            meta = json.loads(fh.read().decode())
    except FileNotFoundError:
        raise missing(f"{str(folder)!r} holds no image.json: it is not a `small compile` output folder") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{str(jpath)!r} is not valid JSON ({exc}): recompile with `small compile`") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(f"{str(jpath)!r} is not a SMALL hardware image (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and version > VERSION
        raise FileFormatError(
            f"{str(jpath)!r} has image schema version {version!r}; this SMALL reads version {VERSION}"
            + (": it was made by a newer SMALL, upgrade SMALL" if newer else ": recompile it with this SMALL")
        )
    what = f"hardware image {jpath}"
    check(IMAGE_SCHEMA, meta, what)
    # images written before the checksum have none, and still load
    if "json_sha256" in meta and json_checksum(meta) != meta["json_sha256"]:
        raise FileFormatError(
            f"{jpath} was edited by hand (its checksum differs): recompile it with `small compile`, "
            "or delete its json_sha256 field to run the edited image as it is"
        )
    npz = folder / "image.npz"
    try:
        fh = open("image.npz", "rb", opener=opener)
    except FileNotFoundError:
        raise missing(f"image arrays {str(npz)!r} does not exist: recompile with `small compile`") from None
    with fh:
        if "arrays_sha256" in meta and hashlib.file_digest(fh, "sha256").hexdigest() != meta["arrays_sha256"]:
            raise FileFormatError(
                f"{str(npz)!r} does not match image.json (SHA-256 differs): the image is corrupt or was edited; recompile it"
            )
        fh.seek(0)
        arrays = read_npz(npz, what="image arrays", source=fh)
    image = HardwareImage(meta, arrays)
    _Validator(image, what).run()  # the schema held above
    return image


# -------------------------------------------------------------------------------------------
class _Validator:
    """The rules of docs/hardware-image.md that the schema cannot state (arrays against ``meta``,
    fields against each other), checked at load and before save on a ``meta`` that holds the schema."""

    def __init__(self, image: HardwareImage, what: str = "hardware image"):
        self.image, self.meta, self.a, self.what = image, image.meta, image.arrays, what

    def fail(self, message: str) -> None:
        raise FileFormatError(f"invalid {self.what}: {message}")

    def need(self, key: str, shape: tuple[int, ...] | None, kinds: str) -> np.ndarray:
        if key not in self.a:
            self.fail(f"array {key!r} is missing")
        arr = self.a[key]
        if arr.dtype.kind not in kinds:
            self.fail(f"array {key!r} has dtype {arr.dtype}, expected kind {kinds!r}")
        if shape is not None and arr.shape != shape:
            self.fail(f"array {key!r} has shape {list(arr.shape)}, expected {list(shape)}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            self.fail(f"array {key!r} contains NaN or Inf")
        return arr

    def run(self) -> None:
        m = self.meta
        T, R, C, L, D = m["n_tiles"], m["tile"]["rows"], m["tile"]["cols"], m["levels"], m["delay_slots"]
        if m.get("chip_tiles", T) < T:
            self.fail(f"chip_tiles ({m['chip_tiles']}) must be >= n_tiles ({T})")
        if "arithmetic" in m and m["arithmetic"]["frac_bits"] >= m["arithmetic"]["v_bits"]:
            self.fail("arithmetic.frac_bits must be below arithmetic.v_bits")
        if "device" in m and not m["device"]["g_max_uS"] > m["device"]["g_min_uS"]:
            self.fail("device.g_max_uS must be above device.g_min_uS")
        for part in ("inputs", "populations", "outputs"):
            names = [entry["name"] for entry in m[part]]
            if len(set(names)) != len(names):
                self.fail(f"{part} names {sorted(n for n in set(names) if names.count(n) > 1)[0]!r} twice")
        for i, entry in enumerate(m["inputs"]):
            if "shape" in entry and math.prod(entry["shape"]) != entry["size"]:
                self.fail(f"inputs[{i}].size ({entry['size']}) is not the product of its shape {entry['shape']}")
        for name in ("g_pos", "g_neg"):
            g = self.need(name, (T, R, C), "u")
            if g.size and int(g.max()) > L - 1:
                self.fail(f"{name} holds level {int(g.max())}, above levels - 1 = {L - 1}")
        self.need("scale", (T, C), "f")
        if np.any(self.a["scale"] <= 0):
            self.fail("scale must be positive")
        phys = self.need("tile_phys", (T,), "i")
        if len(set(phys.tolist())) != T or (T and phys.min() < 0):
            self.fail("tile_phys must name distinct physical tiles")
        if T and phys.max() >= m.get("chip_tiles", T):
            self.fail(f"tile_phys names physical tile {int(phys.max())}, beyond chip_tiles ({m.get('chip_tiles', T)})")
        kind = self.need("col_kind", (T, C), "i")
        model = self.need("col_model", (T, C), "i")
        self.need("col_reset", (T, C), "i")
        fire = self.need("col_fire", (T, C), "i")
        if np.any((fire < 0) | (fire > 1)):
            self.fail("col_fire must be 0 (fire at v > threshold) or 1 (at v >= threshold)")
        merge = self.need("merge_to", (T, C), "i")
        neuron = kind == COL_NEURON
        partial = kind == COL_PARTIAL
        if np.any((kind < 0) | (kind > 2)):
            self.fail("col_kind holds an unknown column kind")
        if np.any(neuron & ~np.isin(model, list(MODEL_CODES.values()))):
            self.fail("a neuron column has an unknown col_model")
        flat_kind = kind.reshape(-1)
        targets = merge[partial]
        if np.any(merge[~partial] != -1):
            self.fail("merge_to must be -1 except on partial-sum columns")
        if targets.size and (targets.min() < 0 or targets.max() >= T * C or np.any(flat_kind[targets] != COL_NEURON)):
            self.fail("a partial-sum column merges into something that is not a neuron column")
        param_kind = "i" if m["target"] == "digital" else "f"
        for name in NEURON_PARAMS:
            self.need(f"param/{name}", (T, C), param_kind)
        if np.any(self.need("param/start", (T, C), "i") < 0):
            self.fail("param/start must be >= 0")
        ref = self.need("param/refractory", (T, C), "i")
        if np.any(ref < 0):
            self.fail("refractory periods must be >= 0")
        if m["target"] == "digital":
            ar = Arithmetic(**m["arithmetic"])
            hi = 1 << ar.decay_bits
            for name in ("alpha", "alpha_syn", "alpha_adapt"):
                v = self.a[f"param/{name}"]
                if np.any((v < 0) | (v > hi)):
                    self.fail(f"param/{name} must lie in [0, 2**decay_bits]")
            if np.any(ref >= 1 << ar.refractory_bits):
                self.fail("a refractory period does not fit refractory_bits")
        host = self.need("host_out", (T, C), "b")
        if np.any(host & ~neuron):
            self.fail("host_out is set on a column without a neuron")
        self._table("route", T * C, T, R, D)
        n_in = sum(int(i["size"]) for i in m["inputs"])
        self._table("input", n_in, T, R, D)
        fed = np.concatenate([self.a["route_tile"].astype(np.int64) * R + self.a["route_row"],
                              self.a["input_tile"].astype(np.int64) * R + self.a["input_row"]])
        fed.sort()
        if np.any(fed[1:] == fed[:-1]):
            self.fail("a row is fed by more than one (source, delay): every row is one axon")
        sources = self.image.route_sources("route")
        if sources.size and np.any(flat_kind[sources] != COL_NEURON):
            self.fail("a routing-table entry has a source column without a neuron")
        for pop in m["populations"]:
            for part in ("tile", "col"):
                self.need(f"pop/{pop['name']}/{part}", (int(pop["size"]),), "i")
            addr = self.a[f"pop/{pop['name']}/tile"].astype(np.int64) * C + self.a[f"pop/{pop['name']}/col"]
            if addr.size and (addr.min() < 0 or addr.max() >= T * C or np.any(flat_kind[addr] != COL_NEURON)):
                self.fail(f"population {pop['name']!r} maps onto columns without neurons")
            starts = self.a["param/start"].reshape(-1)[addr]
            if np.any(starts != pop["latency"]):  # the simulators read one, the report the other
                self.fail(f"population {pop['name']!r} has latency {pop['latency']}, but its columns start at chip "
                          f"step {int(starts[starts != pop['latency']][0])} (param/start)")
        pops = {p["name"]: p for p in m["populations"]}
        for out in m["outputs"]:
            if out.get("population") not in pops:
                self.fail(f"output {out.get('name')!r} refers to an unknown population")
            if "size" in out and out["size"] != pops[out["population"]]["size"]:
                self.fail(f"output {out['name']!r} has size {out['size']}, its population {out['population']!r} "
                          f"{pops[out['population']]['size']}")
            if out["latency"] != pops[out["population"]]["latency"]:
                self.fail(f"output {out['name']!r} has latency {out['latency']}, its population {out['population']!r} "
                          f"{pops[out['population']]['latency']}")
            if out.get("kind") == "value":
                self.need(f"output/{out['name']}/value_scale", (int(pops[out["population"]]["size"]),), "f")
        if m["target"] == "memristive" and "stuck_pos" in self.a:
            for name in ("stuck_pos", "stuck_neg"):
                s = self.need(name, (T, R, C), "i")
                if np.any((s < -1) | (s > L - 1)):
                    self.fail(f"{name} holds a level outside [-1, levels - 1]")

    def _table(self, prefix: str, n_sources: int, T: int, R: int, D: int) -> None:
        ptr = self.need(f"{prefix}_ptr", (n_sources + 1,), "i")
        if ptr[0] != 0 or np.any(np.diff(ptr) < 0):
            self.fail(f"{prefix}_ptr must start at 0 and never decrease")
        n = int(ptr[-1])
        tile = self.need(f"{prefix}_tile", (n,), "i")
        row = self.need(f"{prefix}_row", (n,), "i")
        delay = self.need(f"{prefix}_delay", (n,), "i")
        if n and (tile.min() < 0 or tile.max() >= T or row.min() < 0 or row.max() >= R):
            self.fail(f"{prefix} table names a tile or row outside the chip")
        if n and (delay.min() < 0 or delay.max() >= D):
            self.fail(f"{prefix} table holds a delay outside [0, delay_slots)")
