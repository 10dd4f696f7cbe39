"""Atomic, reproducible file output and safe array input.

Every artifact SMALL writes goes through :func:`atomic_output`: it is written under a
temporary name in the destination folder and renamed into place only when complete, so a
failed run never leaves a half-written file. Archives of arrays are ``.npz`` files with fixed
timestamps (byte-identical for identical content) and are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .errors import FileFormatError

# A fixed timestamp makes the zip container reproducible (zip cannot store dates before 1980).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileFormatError(f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist")
    # the real suffix last: writers that pick a format by file name (matplotlib) see the right one
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, marker: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` when the block succeeds.

    An existing ``path`` is replaced only if it is empty or holds ``marker`` (a file SMALL
    wrote there before), so a mistyped ``-o`` never deletes a user's folder. On any exception
    the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / marker).exists())):
        raise FileFormatError(
            f"{str(path)!r} exists and is not a SMALL output folder (no {marker}): choose another output folder"
        )
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / "previous")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def json_text(doc: Any, *, sort_keys: bool = True) -> str:
    """``doc`` as SMALL writes JSON: strict (no NaN or infinity), indented by one, one final newline."""
    return json.dumps(doc, indent=1, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, doc: Any, *, sort_keys: bool = True) -> None:
    """Write ``doc`` as :func:`json_text` atomically, flushed to disk before the rename, so that a
    crash leaves either the old file or the new one."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json_text(doc, sort_keys=sort_keys))
            fh.flush()
            os.fsync(fh.fileno())


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str] = ("*",)) -> None:
    """Remove what a killed writer left in ``folder``: :func:`atomic_output`'s ``.<name>.*.tmp<suffix>``
    files for each of ``names`` (file names or glob patterns)."""
    for name in names:
        for stale in Path(folder).glob(f".{name}.*.tmp*"):
            with contextlib.suppress(OSError):
                stale.unlink()


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array as ``.npy``, atomically (no pickle)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, compress: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` archive, atomically and byte-reproducibly.

    Entries are written in sorted key order with a fixed timestamp. Object arrays are refused
    (they would need pickle to read back).
    """
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=compression) as zf:
            for key in sorted(arrays):
                value = np.asanyarray(arrays[key])
                if value.dtype.hasobject:
                    raise TypeError(f"array {key!r} has dtype object, which cannot be stored without pickle")
                buf = io.BytesIO()
                np.lib.format.write_array(buf, value, allow_pickle=False)
                info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_EPOCH)
                info.compress_type = compression
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())


def read_npz(path: str | os.PathLike, *, what: str = "archive") -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (``allow_pickle=False``) into a dict.

    Raises :class:`FileFormatError` naming the file when it is missing, truncated, not an
    ``.npz`` archive, or holds pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{what} {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise FileFormatError(f"{what} {str(path)!r} is not a readable .npz archive ({exc})") from None
