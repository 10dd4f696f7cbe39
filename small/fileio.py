"""Atomic, reproducible file output and safe array input.

Every artifact SMALL writes goes through :func:`atomic_output`: it is written under a
temporary name in the destination folder and renamed into place only when complete, so a
failed run never leaves a half-written file. Output folders go through :func:`atomic_directory`:
locked against concurrent writers, swapped in whole, finished by the next run after a kill, and
the user's own files in them kept. Archives of arrays are ``.npz`` files with fixed timestamps
(byte-identical for identical content) and are read with ``allow_pickle=False``, after the sizes
their headers declare are checked against the memory budget (:mod:`small.limits`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import glob
import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping

import numpy as np

from .errors import FileFormatError, SmallError
from .limits import check_memory

# A fixed timestamp makes the zip container reproducible (zip cannot store dates before 1980).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

#: What reading a damaged ``.npz`` archive raises: a broken container or deflate stream (zlib), a
#: header naming a zip feature Python lacks (NotImplementedError) or an encrypted member
#: (RuntimeError), a member's .npy header or data cut short or changed (ValueError, EOFError).
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, ValueError, OSError, EOFError,
                  KeyError)
#: The dtype kinds of arrays SMALL reads as numbers: bool, signed and unsigned integers, floats.
NUMBER_KINDS = "biuf"


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


#: Seconds a run waits for another SMALL run writing the same output folder before it gives up.
LOCK_TIMEOUT = 600.0

# What atomic_directory leaves beside a folder NAME while it works: `.NAME.XXXXXXXX.tmp` (being
# written), `.NAME.XXXXXXXX.new` (complete, being swapped in; after the swap, the folder it replaced),
# `.NAME.XXXXXXXX.old/previous` (the replaced folder, where the swap takes two renames). XXXXXXXX is
# mkdtemp's random part, matched exactly so that `.a.b.XXXXXXXX.tmp` of a folder `a.b` is not `a`'s.
_LEFTOVER = r"\.{name}\.[a-z0-9_]{{8}}\.(tmp|new|old)"
# SMALL's own bookkeeping inside an output folder (a nested output's leftovers, atomic_output's
# temporaries, a nested output's lock): never a user's file to keep
_BOOKKEEPING = re.compile(r"\..+\.([a-z0-9_]{8}\.(tmp|new|old)\S*|lock)")

# renameat2(2): RENAME_EXCHANGE swaps two names in one step (Linux 3.15+, most local filesystems)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically; False where the system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _resolve(path: str | os.PathLike) -> Path:
    """``path`` without symlinks: ``-o link`` writes into the link's target and keeps the link."""
    return Path(os.path.realpath(path))


def _lock_file(path: Path) -> Path:
    """The lock of output folder ``path``: ``.<name>.lock`` beside it; for a folder inside another
    SMALL output (a build's ``hdl/``), that output's lock, so that a recompile of the build and
    ``small hdl`` writing into it wait for each other."""
    enclosing = path.parent.parent / f".{path.parent.name}.lock"
    return enclosing if enclosing.is_file() else path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of output folder ``path`` (its parent must exist) and yield its resolved path.

    Writers of a folder (:func:`atomic_directory`) and readers that must not see it change (``small
    verify``) hold it; the lock is reentrant within a thread. It is a file (``filelock``, ``flock``
    underneath: released by the kernel when its holder dies) that stays beside the folder. After
    :data:`LOCK_TIMEOUT` seconds of waiting, :class:`SmallError` names the folder.
    """
    from filelock import FileLock, Timeout

    path = _resolve(path)
    lock_file = _lock_file(path)
    lock = FileLock(lock_file, is_singleton=True)
    try:
        lock.acquire(timeout=LOCK_TIMEOUT)
    except Timeout:
        raise SmallError(f"another SMALL run has been writing {str(path)!r} for {LOCK_TIMEOUT:g} s (it holds "
                         f"{str(lock_file)!r}): wait until it ends, or choose another output folder") from None
    try:
        yield path
    finally:
        lock.release()


def _is_owned(name: str, owned: Iterable[str] | None) -> bool:
    return owned is None or any(fnmatch.fnmatchcase(name, pattern) for pattern in owned)


def _users_entries(folder: Path, marker: str, owned: Iterable[str] | None) -> list[str]:
    """The entries of ``folder`` that SMALL did not write: every entry of a folder without ``marker``
    (not a SMALL output), else those that match no pattern of ``owned``."""
    names = sorted(n for n in os.listdir(folder) if not _BOOKKEEPING.fullmatch(n))
    if not (folder / marker).exists():
        return names
    return [n for n in names if not _is_owned(n, owned)]


def _discard(folder: Path) -> None:
    """Remove a leftover folder: renamed to a ``.tmp`` name first, so that a kill during the removal
    leaves a folder the next run removes whole rather than half a build it might take for a user's."""
    trash = folder.with_suffix(".tmp")
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _give_back(replaced: Path, path: Path, marker: str, owned: Iterable[str] | None, holder: Path) -> None:
    """Move the user's entries of ``replaced`` (the folder a swap took out) into ``path``, then remove
    ``holder`` (``replaced`` or the ``.old`` folder around it). An entry whose name ``path`` already
    has stays where it is, and so does ``holder``: no file of the user's is removed."""
    clash = False
    for name in _users_entries(replaced, marker, owned):
        if os.path.lexists(path / name):
            clash = True
        else:
            os.rename(replaced / name, path / name)
    if not clash:
        _discard(holder)


def _leftovers(path: Path) -> dict[str, list[Path]]:
    pattern = re.compile(_LEFTOVER.format(name=re.escape(path.name)))
    found: dict[str, list[Path]] = {"tmp": [], "new": [], "old": []}
    for entry in sorted(os.listdir(path.parent)):
        m = pattern.fullmatch(entry)
        if m and (path.parent / entry).is_dir():
            found[m.group(1)].append(path.parent / entry)
    return found


def recover_directory(path: str | os.PathLike, *, marker: str, owned: Iterable[str] | None = None) -> None:
    """Finish what a killed :func:`atomic_directory` on ``path`` left, with the folder's lock held.

    If ``path`` is missing (a kill between the two renames of a swap), the folder it replaced comes
    back, or else the complete new one is put in place; the user's files in a replaced folder are
    moved back into ``path``; unfinished folders are removed. Nothing of the user's is removed.
    """
    path = _resolve(path)
    left = _leftovers(path)
    for unfinished in left["tmp"]:
        shutil.rmtree(unfinished, ignore_errors=True)
    if not os.path.lexists(path):
        previous = [old / "previous" for old in left["old"] if (old / "previous").is_dir()]
        if previous:
            os.rename(previous[0], path)
        elif left["new"]:
            os.rename(left["new"].pop(0), path)
    for holder in left["new"] + left["old"]:
        replaced = holder / "previous" if holder.suffix == ".old" else holder
        if replaced.is_dir() and path.is_dir():
            _give_back(replaced, path, marker, owned, holder)
        elif not replaced.exists():
            _discard(holder)


def check_output_folder(path: str | os.PathLike, *, marker: str, owned: Iterable[str] | None = None,
                        force: bool | None = None) -> None:
    """Refuse (:class:`FileFormatError`) an output folder :func:`atomic_directory` must not replace
    (the arguments are its): a caller with long work before the write checks first."""
    path = _resolve(path)
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise FileFormatError(f"{str(path)!r} is the current folder or holds it: SMALL writes an output folder beside "
                              "it and swaps it in whole, which would leave this shell in a removed folder; run from "
                              "elsewhere, or choose another output folder")
    if not path.exists():
        if os.path.lexists(path):  # a symlink to nowhere
            raise FileFormatError(f"{str(path)!r} is a broken symbolic link: remove it or choose another output folder")
        return
    if not path.is_dir():
        raise FileFormatError(f"{str(path)!r} exists and is not a folder: choose another output folder")
    if os.path.ismount(path):
        raise FileFormatError(f"{str(path)!r} is a mount point, which SMALL cannot swap a new folder in for: choose a "
                              "folder inside it")
    if (path / marker).exists() or not any(path.iterdir()):
        return
    if not force:
        hint = "" if force is None else ", or give --force to write into it (its files are kept)"
        raise FileFormatError(f"{str(path)!r} exists and is not a SMALL output folder (no {marker}): choose another "
                              f"output folder{hint}")
    taken = [n for n in os.listdir(path) if owned is not None and _is_owned(n, owned)]
    if taken:
        raise FileFormatError(f"{str(path / sorted(taken)[0])!r} is not SMALL's, and SMALL writes a file of that "
                              "name there: move it away, or choose another output folder")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, marker: str, owned: Iterable[str] | None = None,
                     force: bool | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` when the block succeeds.

    The swap is crash- and race-safe: the folder's lock (:func:`output_lock`) is held from start to
    end, so concurrent writers take turns; the complete new folder and ``path`` trade names in one
    atomic rename (``renameat2`` with ``RENAME_EXCHANGE``; two renames where the filesystem has no
    such call), so a reader of ``path`` sees the whole old folder or the whole new one; and what a
    killed writer left (:func:`recover_directory`) is finished before the next one starts.

    marker : a file every such output holds: a folder with it (or an empty one) may be replaced, any
        other only with ``force``, and a symlink is followed (its target is replaced, the link stays).
    owned : glob patterns of the entries SMALL writes in such a folder, now or by later commands (a
        build's ``hdl/``); every other entry is the user's and is moved into the new folder, so no
        file SMALL did not write is removed (a name clash is refused). ``None``: the whole folder is
        SMALL's (a build's ``report/``).
    force : write into a folder that is not a SMALL output, keeping all its files; ``None`` where the
        command offers no ``--force`` (the refusal then does not suggest it).

    On any exception the temporary folder is removed and ``path`` is untouched.
    """
    path = _resolve(path)
    check_output_folder(path, marker=marker, owned=owned, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(path):
        recover_directory(path, marker=marker, owned=owned)
        check_output_folder(path, marker=marker, owned=owned, force=force)  # another run may have written it since
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o755)
            _swap_in(tmp, path, marker, owned)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap_in(tmp: Path, path: Path, marker: str, owned: Iterable[str] | None) -> None:
    """Put the finished folder ``tmp`` in place of ``path``, keeping the user's entries of ``path``."""
    if not path.exists():
        os.rename(tmp, path)
        return
    if owned is not None:  # what this run wrote is SMALL's in the folder it replaces, listed or not
        owned = (*owned, *map(glob.escape, os.listdir(tmp)))
    clash = sorted(set(_users_entries(path, marker, owned)) & set(os.listdir(tmp)))
    if clash:
        raise FileFormatError(f"{str(path / clash[0])!r} is not SMALL's, and SMALL writes a file of that name there: "
                              "move it away, or choose another output folder")
    new = tmp.with_suffix(".new")  # complete: from here on a kill leaves a folder the next run can swap in
    os.rename(tmp, new)
    if _exchange(new, path):
        replaced = holder = new
    else:
        holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        replaced = holder / "previous"
        os.rename(path, replaced)
        try:
            os.rename(new, path)
        except BaseException:
            os.rename(replaced, path)
            raise
    _give_back(replaced, path, marker, owned, holder)


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


def npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` array that starts at ``fh``'s position, from its header alone.

    Raises ``ValueError`` if the header is not one numpy writes.
    """
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return tuple(int(n) for n in shape), dtype


def _check_declared(shape: tuple[int, ...], dtype: np.dtype, what: str, error: type[Exception]) -> int:
    """The bytes an array of ``shape`` and ``dtype`` takes; ``error`` if it breaks the memory budget."""
    nbytes = math.prod(shape) * dtype.itemsize
    check_memory(nbytes, f"{what} declares shape {list(shape)} of {dtype}, which", error=error)
    return nbytes


def read_npy(path: str | os.PathLike, *, what: str = "array", error: type[Exception] = FileFormatError) -> np.ndarray:
    """Read one ``.npy`` array of numbers (no pickle) after checking its declared size against the
    memory budget (:func:`small.limits.check_memory`). ``error`` names the file when it is missing,
    not a ``.npy`` array, or holds no numbers (strings, records, dates, complex: every reader of an
    array of inputs, conductances or voltages would cast them wrongly or fail); an ``.npz`` archive
    is refused."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist")
    if zipfile.is_zipfile(path):
        raise error(f"{what} {str(path)!r} is an .npz archive: give one .npy array")
    try:
        with open(path, "rb") as fh:
            shape, dtype = npy_header(fh)
            if dtype.kind not in NUMBER_KINDS:
                raise error(f"{what} {str(path)!r} holds {dtype} values: give numbers (bool, integer or float, "
                            "e.g. float32)")
            _check_declared(shape, dtype, f"{what} {str(path)!r}", error)
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise error(f"cannot read {what} {str(path)!r} as a .npy array ({exc})") from None


def check_npz(path: str | os.PathLike, *, what: str = "archive", error: type[Exception] = FileFormatError,
              source: BinaryIO | None = None) -> None:
    """Raise ``error`` if the arrays of the ``.npz`` file ``path``, by their headers alone, would need
    more than the memory budget (:func:`small.limits.check_memory`): each one, and all together.
    ``source``: the archive as an open file, read instead of ``path`` (which then only names it)."""
    total = 0
    with zipfile.ZipFile(path if source is None else source) as zf:
        for info in zf.infolist():
            with zf.open(info) as fh:
                is_npy = fh.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX
                fh.seek(0)
                # np.load reads a member that is not a .npy array as raw bytes
                total += (_check_declared(*npy_header(fh), f"{what} {str(path)!r}: member {info.filename!r}", error)
                          if is_npy else info.file_size)
    check_memory(total, f"{what} {str(path)!r} (all its arrays)", error=error)


def read_npz(path: str | os.PathLike, *, what: str = "archive", source: BinaryIO | None = None) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (``allow_pickle=False``) into a dict.

    The members' declared sizes are checked first (:func:`check_npz`), so nothing is allocated for
    an archive that declares more than the machine can hold. Raises :class:`FileFormatError` naming
    the file when it is missing, truncated, not an ``.npz`` archive, holds pickled objects or is too
    large. ``source``: the archive as an open file (read from its start) instead of ``path``, which
    then only names it: a reader that must take every file from one folder opens them itself.
    """
    path = Path(path)
    if source is None and not path.is_file():
        raise FileFormatError(f"{what} {str(path)!r} does not exist")
    try:
        check_npz(path, what=what, source=source)
        if source is not None:
            source.seek(0)
        with np.load(path if source is None else source, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ARCHIVE_ERRORS as exc:
        raise FileFormatError(f"{what} {str(path)!r} is not a readable .npz archive ({exc})") from None
