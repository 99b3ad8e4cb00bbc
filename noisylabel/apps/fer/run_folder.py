"""A training run's folder, in one place: its file names, atomic writes, the new / resume /
overwrite decision, numbered default folders and the lock a run holds while it writes.

- **File names**: [`CHECKPOINT`][noisylabel.apps.fer.run_folder.CHECKPOINT] and the other
  constants below; [`RUN_FILES`][noisylabel.apps.fer.run_folder.RUN_FILES] lists every file a
  run writes.
- **Reading back**: [`load_error_cause`][noisylabel.apps.fer.run_folder.load_error_cause] says
  why ``torch.load(..., weights_only=True)`` could not read a file, without torch's advice to
  load it unsafely.
- **Atomic writes**: [`atomic_write_text`][noisylabel.apps.fer.run_folder.atomic_write_text],
  [`atomic_torch_save`][noisylabel.apps.fer.run_folder.atomic_torch_save],
  [`write_json`][noisylabel.apps.fer.run_folder.write_json] and
  [`atomic_output`][noisylabel.apps.fer.run_folder.atomic_output] write a temp file beside the
  target, then ``os.replace`` it: a reader never sees a torn file.
  [`remove_stale_temp_files`][noisylabel.apps.fer.run_folder.remove_stale_temp_files] removes
  what a killed write left.
- **The decision**: [`decide`][noisylabel.apps.fer.run_folder.decide]: a new run, a resumed
  one or a replaced one; a finished run is never replaced unasked.
- **Numbered folders**: with ``--out`` left at its default a new run goes to the next folder
  of its name ([`claim_next`][noisylabel.apps.fer.run_folder.claim_next]: ``...-seed0``,
  ``...-seed0-2``, ...), and ``--resume`` continues the newest
  ([`newest`][noisylabel.apps.fer.run_folder.newest]).
- **The lock**: [`lock`][noisylabel.apps.fer.run_folder.lock], ``fcntl.flock`` on
  [`LOCK`][noisylabel.apps.fer.run_folder.LOCK] in the folder, held while the run writes. The
  operating system releases it when the process ends, however it ends, so a crash leaves no
  stale lock; a second writer is refused with
  [`RunFolderInUse`][noisylabel.apps.fer.run_folder.RunFolderInUse].

This module imports torch only to save a tensor file, so ``noisylabel-fer --help`` stays fast.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

__all__ = ["CHECKPOINT", "MODEL_LAST", "MODEL_BEST", "MODEL_CARD", "METRICS", "CONFIG",
           "SUMMARY", "LOG", "CURVES", "CONFUSION", "SIMILARITY", "TENSORBOARD", "LOCK",
           "RUN_FILES", "MODEL_FILES", "WEIGHT_FILES", "Start", "RunFolderInUse",
           "current_umask", "write_error", "load_error_cause", "atomic_output",
           "atomic_write_text",
           "atomic_torch_save", "write_json", "remove_stale_temp_files", "decide",
           "remove_run_files", "outputs", "checkpoint_of", "next_folder", "claim_next",
           "newest", "lock"]

CHECKPOINT = "checkpoint.pt"
"""Everything ``--resume`` needs: model, optimiser, scheduler, noise model, random streams,
history (written after every epoch)."""
MODEL_LAST = "model_last.pt"
"""The weights prediction needs, of the last epoch."""
MODEL_BEST = "model_best.pt"
"""The same, of the epoch with the best validation accuracy (layouts with a validation split)."""
MODEL_CARD = "model_card.json"
"""What the weights are."""
METRICS = "metrics.csv"
"""One row per epoch."""
CONFIG = "config.json"
"""The options the run used."""
SUMMARY = "summary.json"
"""The accuracy summary, written at the end."""
LOG = "train.log"
"""Every line the run printed, time-stamped."""
CURVES, CONFUSION, SIMILARITY = "curves.png", "confusion.png", "similarity.png"
"""The plots written at the end."""
TENSORBOARD = "tensorboard"
"""The folder of TensorBoard event files."""
LOCK = ".lock"
"""The file a writing run holds locked (removed when it lets go)."""

RUN_FILES = (CHECKPOINT, MODEL_LAST, MODEL_BEST, MODEL_CARD, METRICS, CONFIG, SUMMARY, CURVES,
             CONFUSION, SIMILARITY, LOG)
"""The files a run writes into its folder (``--overwrite`` removes them, and ``tensorboard/``)."""
MODEL_FILES = (MODEL_BEST, MODEL_LAST, CHECKPOINT)
"""The files a model loads from, in the order a run folder is searched for one."""
WEIGHT_FILES = (MODEL_LAST, MODEL_BEST)
"""The weights-only files (their SHA-256 is in the model card)."""

Start = Literal["new", "resume", "overwrite"]
"""How a run starts in its folder (see [`decide`][noisylabel.apps.fer.run_folder.decide])."""


class RunFolderInUse(ValueError):
    """Another process holds the run folder's lock: it is writing a run there."""


# ----------------------------------------------------------------------------- atomic writes


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, which changes nothing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(path: Path, exc: BaseException) -> OSError:
    """An OSError naming ``path`` and the cause (``No space left on device``, ...)."""
    number = getattr(exc, "errno", None)
    cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return OSError(number, f"cannot write ({cause})", str(path))


_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


def load_error_cause(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` raised ``exc``, in a few words.

    torch's own message advises loading with ``weights_only=False`` (which runs whatever code
    the file carries) or allowlisting the file's classes; neither is passed on: the files of a
    run hold tensors and plain values only.

    Parameters
    ----------
    exc : BaseException
        What ``torch.load`` raised.

    Returns
    -------
    str
        The cause, for a message that names the file.
    """
    text = str(exc)
    unsafe = _UNSAFE_GLOBAL.search(text)
    if unsafe:
        return (f"it needs {unsafe.group(1)} to load, and only tensors and plain values are "
                "loaded, never code a file carries")
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        return "not a file written by torch.save"
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _temp_file(path: Path) -> tuple[int, str]:
    """A temp file beside ``path`` (``.NAME.XXXX.tmp``) with the mode a plain ``open`` would
    give it (``0o666 & ~umask``; ``mkstemp`` alone makes it 0600, unreadable to others)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())
    except OSError as exc:
        raise write_error(path, exc) from exc
    return fd, tmp


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temp file beside ``path`` for the block to write (by name); on a normal exit it
    replaces ``path``, on any exception it is removed and ``path`` stays as it was.

    For writers that want a file name rather than a file object (``torch.jit.save``,
    ``onnx.save``). The file gets the mode the umask gives.

    Parameters
    ----------
    path : str or Path
        The file to write.

    Yields
    ------
    Path
        The temp file (``.NAME.XXXX.tmp`` in ``path``'s folder).
    """
    path = Path(path)
    fd, tmp = _temp_file(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _atomic_write(path: Path, write: Callable[[Any], Any], mode: str) -> None:
    """Write through ``write(file_object)`` into a temp file beside ``path``, then
    os.replace: never a torn file, never a temp file left behind (but after a kill -9, which
    [`remove_stale_temp_files`][noisylabel.apps.fer.run_folder.remove_stale_temp_files]
    cleans)."""
    fd, tmp = _temp_file(path)
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_error_in(exc)
        if cause is None:
            raise
        raise write_error(path, cause) from exc


def _os_error_in(exc: BaseException) -> OSError | None:
    """The first OSError in ``exc``'s chain (itself, its cause, its context), if any: torch.save
    on a full disk raises its zip writer's RuntimeError while handling the ``ENOSPC``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, then os.replace: never a torn file.

    The file gets the mode the umask gives. A failed write (full disk, no permission) removes
    the temp file and raises OSError naming ``path`` and the cause.

    Parameters
    ----------
    path : str or Path
        The file to write.
    text : str
        Its content (UTF-8, newlines as given).
    """
    _atomic_write(Path(path), lambda fh: fh.write(text), "w")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, then os.replace: never a torn checkpoint.

    As [`atomic_write_text`][noisylabel.apps.fer.run_folder.atomic_write_text]: the umask's
    mode, and an OSError naming ``path`` and the cause when the write fails (on a full disk
    torch.save raises a RuntimeError of its zip writer while handling the ``ENOSPC``; the
    ``ENOSPC`` is what is reported).

    Parameters
    ----------
    obj : object
        What ``torch.save`` writes.
    path : str or Path
        The file to write.
    """
    import torch

    _atomic_write(Path(path), lambda fh: torch.save(obj, fh), "wb")


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON (keys sorted), atomically.

    Parameters
    ----------
    path : str or Path
        The file to write.
    data : mapping
        JSON-able values (others are written as their ``str``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


def remove_stale_temp_files(folder: str | Path, names: Sequence[str] | None = None
                            ) -> list[Path]:
    """Remove the temp files (``.NAME.XXXX.tmp``) that a killed atomic write left in ``folder``.

    Parameters
    ----------
    folder : str or Path
        A run folder, or the folder of an output file.
    names : sequence of str or None
        Only the temp files of these output names; None = any.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for tmp in sorted(folder.glob(".*.tmp")):
        name = tmp.name[1:].rsplit(".", 2)[0]  # .NAME.XXXXXXXX.tmp -> NAME
        if tmp.is_file() and (names is None or name in names):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


# ----------------------------------------------------------------------------- the decision


def decide(folder: str | Path, resume: bool, overwrite: bool) -> Start:
    """How a run starts in ``folder``: it holds a run exactly when ``resume`` asks to continue
    one. A run is never replaced unasked (``overwrite`` replaces it), and a mistyped folder with
    ``resume`` never starts afresh. Nothing is read but whether the checkpoint is there.

    Parameters
    ----------
    folder : str or Path
        The run folder.
    resume, overwrite : bool
        ``--resume`` and ``--overwrite``.

    Returns
    -------
    {"new", "resume", "overwrite"}
        ``"overwrite"`` whenever ``overwrite`` is given (the previous run's files, if any, are
        then removed by [`remove_run_files`][noisylabel.apps.fer.run_folder.remove_run_files]).

    Raises
    ------
    ValueError
        Both ``resume`` and ``overwrite``; ``resume`` without a checkpoint in ``folder``; or a
        checkpoint there without ``resume`` or ``overwrite``.
    """
    path = Path(folder).expanduser() / CHECKPOINT
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: "
                         "give one of them")
    exists = path.is_file()
    if resume and not exists:
        raise ValueError(f"--resume: there is no run to continue in {path.parent} (no "
                         f"{path.name}); check the folder, or leave out --resume to start "
                         "a new run")
    if exists and not resume and not overwrite:
        raise ValueError(f"{path.parent} already holds a run ({path.name}): pass --resume "
                         "to continue it, --overwrite to replace it, or another --out")
    return "resume" if resume else "overwrite" if overwrite else "new"


def remove_run_files(folder: str | Path) -> None:
    """Remove a previous run's files from ``folder`` (``RUN_FILES`` and ``tensorboard/``), so
    that none of them is mistaken for the next run's.

    Parameters
    ----------
    folder : str or Path
        The run folder.
    """
    folder = Path(folder)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / TENSORBOARD, ignore_errors=True)


def outputs(folder: str | Path) -> list[str]:
    """The run's outputs that ``folder`` holds now: those of
    [`RUN_FILES`][noisylabel.apps.fer.run_folder.RUN_FILES] that are there, in its order, then
    ``tensorboard/`` when it is there.

    Parameters
    ----------
    folder : str or Path
        The run folder.

    Returns
    -------
    list of str
        File names (the TensorBoard folder with a trailing ``/``).
    """
    folder = Path(folder)
    names = [name for name in RUN_FILES if (folder / name).is_file()]
    return names + ([f"{TENSORBOARD}/"] if (folder / TENSORBOARD).is_dir() else [])


def checkpoint_of(path: str | Path) -> Path:
    """The training checkpoint ``path`` names: a run folder's ``checkpoint.pt``, or ``path``.

    Parameters
    ----------
    path : str or Path
        A run folder or a checkpoint file.

    Returns
    -------
    Path
        The checkpoint file (not checked to exist).
    """
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


# ----------------------------------------------------------------------------- numbered folders


def _numbers(base: Path) -> dict[int, Path]:
    """What exists of ``base``'s name: 1 -> ``base``, n -> ``base-n`` (n >= 2)."""
    found = {1: base} if base.exists() else {}
    pattern = re.compile(re.escape(base.name) + r"-([0-9]+)")
    if base.parent.is_dir():
        for path in base.parent.iterdir():
            match = pattern.fullmatch(path.name)
            if match and int(match.group(1)) >= 2:
                found[int(match.group(1))] = path
    return found


def newest(base: str | Path) -> Path | None:
    """The newest folder of ``base``'s name: the highest-numbered of ``base``, ``base-2``, ...

    Parameters
    ----------
    base : str or Path
        The default run folder (``runs/fer/<data>-<variant>-noise<rate>-seed<seed>``).

    Returns
    -------
    Path or None
        The folder, or None when there is none.
    """
    found = _numbers(Path(base))
    return found[max(found)] if found else None


def next_folder(base: str | Path) -> Path:
    """The folder [`claim_next`][noisylabel.apps.fer.run_folder.claim_next] would claim now
    (nothing is created).

    Parameters
    ----------
    base : str or Path
        The default run folder.

    Returns
    -------
    Path
        ``base`` when nothing of its name exists, else ``base-N`` with N one above the highest
        number there.
    """
    base = Path(base)
    found = _numbers(base)
    return base if not found else base.with_name(f"{base.name}-{max(found) + 1}")


@contextmanager
def claim_next(base: str | Path) -> Iterator[Path]:
    """Claim the next folder of ``base``'s name for the block: ``base`` when there is none,
    else ``base-N`` with N one above the highest number there (a number is never reused, so
    the highest is the newest: [`newest`][noisylabel.apps.fer.run_folder.newest]).

    Creating the folder is the claim, so two runs started together get two folders. A folder
    the block leaves empty (a run that failed before writing anything) is removed again.

    Parameters
    ----------
    base : str or Path
        The default run folder.

    Yields
    ------
    Path
        The new folder.
    """
    while True:
        folder = next_folder(base)
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:
            continue  # claimed meanwhile: count again
    try:
        yield folder
    finally:
        _remove_if_empty(folder)


# ----------------------------------------------------------------------------- the lock


@contextmanager
def lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block: no other process writes a run there meanwhile.

    ``fcntl.flock`` on ``folder/.lock`` (created, with this process's pid in it). The lock dies
    with the process, so a run killed in any way leaves none behind; the file itself is removed
    when the block ends. A folder this call had to create is removed again when the block
    leaves it empty.

    Parameters
    ----------
    folder : str or Path
        The run folder.

    Yields
    ------
    Path
        ``folder``.

    Raises
    ------
    RunFolderInUse
        Another process holds the lock; the message names the folder and that process's pid.
    """
    folder = Path(folder)
    created = not folder.exists()
    fd = _acquire(folder / LOCK)
    try:
        yield folder
    finally:
        (folder / LOCK).unlink(missing_ok=True)  # before letting go: see _acquire
        os.close(fd)
        if created:
            _remove_if_empty(folder)


def _acquire(path: Path) -> int:
    """Open and lock ``path``; return the descriptor. A holder removes the file before it lets
    go, so a lock won on a file no longer at ``path`` is let go and taken again on the new one."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            continue  # the folder was removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise write_error(path, exc) from exc
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise RunFolderInUse(f"{path.parent} is in use by another run ({who}): wait for it "
                                 "to finish, or give another --out") from None
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (or gone): leave it
