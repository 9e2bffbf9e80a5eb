"""Outputs folders that are never left half-written.

:func:`prepare` runs before any computation: it refuses a folder it cannot write (or a path
that is a file) with one line, and tidies what an interrupted earlier run left beside it.
:func:`atomic_folder` gives a fresh temporary folder *beside* the target
(``.NAME.pleval-tmp-PID``, on the same file system); everything is written there and, only
when all of it is written, the previous folder is renamed aside, the new one renamed into
place and the old one deleted. An interrupted run (Ctrl-C, a kill, a full disk) therefore
leaves the previous outputs whole — or nothing, for a new folder — and the next run needs
no ``--force``: it removes the stale temporary folder, and if the interruption fell between
the two renames it puts the previous folder back first.

:func:`atomic_file` does the same for a single file (``pleval schools --out``, ``pleval
convert --out``): written beside, renamed over the target when complete.

Files in the target that the previous run did not write (kept with ``--force``) are carried
into the new folder as hard links (copies across file systems), so they survive the swap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from .errors import PlevalError

_TMP = ".pleval-tmp-"
_OLD = ".pleval-old-"


def _siblings(out: Path, tag: str) -> list[Path]:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return []
    prefix = f".{out.name}{tag}"
    return sorted(p for p in parent.iterdir() if p.name.startswith(prefix))


def _pid_alive(name: str) -> bool:
    try:
        pid = int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(out: Path) -> None:
    """Undo what an interrupted run left: restore the previous folder if the run stopped
    between the two renames, and delete stale temporary folders (of runs no longer alive)."""
    out = Path(out)
    olds = [p for p in _siblings(out, _OLD) if not _pid_alive(p.name)]
    if olds and not out.exists():
        olds[-1].rename(out)
        olds = olds[:-1]
    for p in olds + [p for p in _siblings(out, _TMP) if not _pid_alive(p.name)]:
        shutil.rmtree(p, ignore_errors=True)


def prepare(out, flag: str = "--out") -> Path:
    """Check, before computing, that ``out`` can be written: it is a folder or does not exist,
    and a folder can be created beside it. Also :func:`recover`. Raises :class:`PlevalError`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PlevalError(f"{flag} {out}: exists and is not a folder; choose a folder")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlevalError(f"{flag} {out}: cannot create the folder {parent} ({exc.strerror}); choose another") from None
    recover(out)
    probe = parent / f".{out.name}{_TMP}probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise PlevalError(f"{flag} {out}: cannot write in {parent} ({exc.strerror}); choose a folder you can write") from None
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise PlevalError(f"{flag} {out}: the folder is not writable; choose another")
    return out


def _carry(src: Path, dst: Path) -> None:
    """Hard-link (or copy) ``src`` into ``dst``."""
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


@contextlib.contextmanager
def atomic_folder(out, *, replaced: Iterable[str] = (), flag: str = "--out") -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success swap it into place (see the module
    docstring). Entries of an existing ``out`` not in ``replaced`` (the previous run's files,
    by relative path) and not written anew are carried over. On any error or interruption
    the temporary folder is removed and ``out`` is untouched."""
    out = prepare(out, flag)
    tmp = out.resolve().parent / f".{out.name}{_TMP}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            replaced = {Path(r).parts[0] for r in replaced}
            for entry in out.iterdir():
                if entry.name not in replaced and not (tmp / entry.name).exists():
                    _carry(entry, tmp / entry.name)
            old = out.resolve().parent / f".{out.name}{_OLD}{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension, so writers pick the same format);
    on success it replaces ``path`` in one rename, on any error it is removed: a file being
    written is never left half-written, and a previous version stays whole until replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{_TMP}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


PROVENANCE_MARK = "pleval estimate outputs"
"""Value of ``provenance.json``'s ``"kind"``: how a previous pleval output folder is recognised."""


_OUTPUT_FILES = (
    "summary.md", "overall.csv", "school_effects.csv", "school_effects.xlsx", "balance.csv", "equivalence.csv",
    "heterogeneity.csv", "attrition.csv", "placebo.csv", "rating.csv", "sensitivity.csv", "subgroups.csv",
    "subgroup_tests.csv", "equity.csv", "moderators.csv", "outcomes.csv", "run.toml", "provenance.json", "report.html", "report.pdf",
)


def _previous_outputs(out: Path) -> list[str] | None:
    """Files a previous pleval run wrote into ``out`` (None if ``out`` is not a pleval output)."""
    p = out / "provenance.json"
    if not p.is_file():
        return None
    try:
        prov = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if prov.get("kind") != PROVENANCE_MARK:
        return None
    return [str(f) for f in prov.get("outputs", [])]


def check_outputs(out_dir, *, force: bool = False, input_path: str | None = None) -> list[str] | None:
    """Refuse, before anything is computed, an outputs folder that cannot be used: a file, a
    folder that cannot be created or written (:func:`pleval.outputs.prepare`), a non-empty
    folder that is not a previous pleval output (unless ``force``), or one where the input file
    would be overwritten. Returns the previous run's files (``None`` if there was none)."""
    out = prepare(out_dir)
    previous = _previous_outputs(out) if out.exists() else None
    if out.exists() and any(out.iterdir()) and previous is None and not force:
        raise PlevalError(
            f"--out {out}: the folder is not empty and is not a previous pleval output (no pleval provenance.json); "
            "choose another folder or pass --force"
        )
    src_path = Path(input_path).resolve() if input_path else None
    if src_path is not None:
        here = out.resolve()
        ours = src_path.parent == here and src_path.name in _OUTPUT_FILES
        in_plots = src_path.parent == here / "plots" and src_path.suffix.lower() in (".png", ".svg")
        listed = previous is not None and any((out / f).resolve() == src_path for f in previous)
        if src_path == here or ours or in_plots or listed:
            raise PlevalError(f"--out {out}: writing there would overwrite the input file {input_path}; choose another folder")
    return previous


__all__ = ["prepare", "recover", "atomic_folder", "atomic_file", "check_outputs", "PROVENANCE_MARK", "PRINT_DPI"]

PRINT_DPI = 200
"""Resolution of every PNG figure a command writes to its outputs folder (``pleval estimate``'s
plots and reports, ``pleval monitor``, ``pleval sensitivity`` and ``pleval power``)."""


def provenance_record(kind: str, df, columns, options: dict, *, pool: dict | None = None) -> dict:
    """What a command's ``provenance.json`` holds: ``kind``, the pleval and Python versions, the
    time, the input file and its SHA-256 (of the file's bytes as read, else of the frame's
    content), the column roles, the options and, for a comparison pool given apart, the pool's
    record (:func:`pleval.pool.match.pool_record`: path, engine, eligible rows, fingerprint).
    ``df`` None (a command that read no file, e.g. ``pleval power`` without ``--from``): the
    input is null; ``columns`` None: no column roles."""
    import platform
    import sys
    from datetime import datetime, timezone

    from . import __version__
    from .data import frame_sha256

    given = None if df is None else {
        "path": df.attrs.get("source"), "sha256": df.attrs.get("sha256") or frame_sha256(df),
        "sha256_of": "file bytes" if df.attrs.get("sha256") else "frame content", "n_rows": len(df),
        "n_columns": df.shape[1]}
    return {
        "kind": kind,
        "pleval_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "input": given,
        "columns": {} if columns is None else {role: list(cols) for role, cols in columns.roles().items()},
        "options": options,
        **({"pool": pool} if pool else {}),
    }


def write_provenance(folder, kind: str, df, columns, options: dict, *, pool: dict | None = None) -> None:
    """``folder/provenance.json``: :func:`provenance_record` as indented JSON (``pleval match``,
    ``rct``, ``sensitivity`` and ``power`` write it into their outputs folders)."""
    write_provenance_file(Path(folder) / "provenance.json", kind, df, columns, options, pool=pool)


def write_provenance_file(path, kind: str, df, columns, options: dict, *, pool: dict | None = None) -> None:
    """:func:`provenance_record` as indented JSON at ``path`` (``pleval schools`` writes
    ``NAME.provenance.json`` beside each table it writes)."""
    record = provenance_record(kind, df, columns, options, pool=pool)
    Path(path).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
