"""A model directory (``crop personalize --out DIR``) holds one model, written and read as one unit.

Its files:

* ``model.safetensors``: the personalized model (always);
* ``model.sparse.safetensors``: the same model in CSR form (sparse methods only);
* ``summary.json``: who, which method, the generic model, the scores, and ``files``: the
  SHA-256 and size of each model file above.

Beside them, other commands write ``certify.json`` (``crop certify --out DIR/certify.json``),
which records the SHA-256 of the model file it certified (``model_sha256``), and ``card.html`` /
``card.md`` (``crop card``).

**Writing** (:func:`model_directory`, :func:`publish_model`):

1. the directory is locked for the whole run (:class:`crop.dirlock.DirectoryLock`, bound to the
   directory itself): a second ``crop personalize`` or ``crop tune`` on it is refused at once
   with one line;
2. every file is staged as a hidden temporary in the directory, then renamed into place: a
   stale ``model.sparse.safetensors`` of an earlier run is removed first, then the model files,
   ``summary.json`` last, with SIGINT and SIGTERM held back;
3. an error, Ctrl-C or SIGTERM before the renames leaves every existing file as it was and no
   temporary behind; a directory the run created is removed again if it is still empty.

**Reading** (:func:`check_model_dir`, :func:`certificate_problem`; used by ``crop card`` and
``crop analyze``): each rename is atomic, the sequence is not, so a SIGKILL or a power cut
between two renames can leave a new model beside the old summary. Readers therefore never trust
the neighbourhood: ``summary.json`` must list every model file present with its SHA-256, and a
model file that differs, is missing or is not listed is a one-line error saying that the file
does not belong to the model the summary describes. ``certify.json`` counts only when its
``model_sha256`` is one of the directory's model files; otherwise the card marks it as another
model's certificate and shows none of its numbers. A ``summary.json`` written before crop
recorded the hashes cannot be checked, and readers say so.

Why not write a staging directory and swap it in: the directory also holds files that other
commands and the user put there (a certificate, a card), which a swap would drop, and an atomic
exchange of two directories (``renameat2(RENAME_EXCHANGE)``) is Linux-only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crop.dirlock import DirectoryLock
from crop.errors import CropError

MODEL = "model.safetensors"
SPARSE = "model.sparse.safetensors"
SUMMARY = "summary.json"
CERTIFY = "certify.json"
MODEL_FILES = (MODEL, SPARSE)
FILES_KEY = "files"  # summary.json: {file name: {"sha256": hex, "bytes": size}}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file (a one-line error if it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise CropError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


@contextmanager
def model_directory(out: str | Path) -> Iterator[DirectoryLock]:
    """Create ``out`` if needed and hold its lock for the block; a one-line error at once if
    another crop run holds it. If the block fails, the directories this call created are
    removed again while they are empty."""
    out = Path(out)
    created = [p for p in [out, *out.parents] if not os.path.lexists(p)]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CropError(f"cannot create {out}: {exc.strerror or exc}") from None
    with DirectoryLock(out, "model directory") as lock:  # refused: nothing of ours to remove
        try:
            yield lock
        except BaseException:
            for path in created:  # innermost first
                try:
                    path.rmdir()
                except OSError:
                    break
            raise


def publish_model(
    lock: DirectoryLock, model: bytes, summary: dict[str, Any], sparse: bytes | None = None
) -> dict[str, Any]:
    """Write the model directory held by ``lock`` as one unit: ``model`` (``model.safetensors``),
    ``sparse`` (``model.sparse.safetensors``; ``None`` removes a stale one) and ``summary``
    (``summary.json``), which gains ``files``, the SHA-256 and size of each model file. Returns
    the summary as written."""
    files = {MODEL: model, **({SPARSE: sparse} if sparse is not None else {})}
    summary = {**summary, FILES_KEY: {name: {"sha256": sha256_bytes(b), "bytes": len(b)} for name, b in files.items()}}
    text = json.dumps(summary, indent=2, default=float)
    lock.replace_files({SPARSE: sparse, MODEL: model, SUMMARY: text.encode("utf-8")})  # the summary last
    return summary


def _recorded(model_dir: Path, summary: dict[str, Any]) -> dict[str, str] | None:
    """``{file name: sha256}`` of ``summary``'s ``files`` (``None`` when absent); a one-line
    error if malformed."""
    files = summary.get(FILES_KEY)
    if files is None:
        return None
    where = model_dir / SUMMARY
    if not isinstance(files, dict) or not files:
        raise CropError(f"{where} is corrupt: {FILES_KEY!r} must map model file names to their SHA-256")
    out = {}
    for name, entry in files.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if name not in MODEL_FILES or not isinstance(sha, str) or len(sha) != 64:
            raise CropError(f"{where} is corrupt: {FILES_KEY}[{name!r}] is not a model file with its SHA-256")
        out[name] = sha
    return out


def check_model_dir(model_dir: str | Path, summary: dict[str, Any]) -> dict[str, str] | None:
    """Check that ``summary`` (read from ``model_dir/summary.json``) describes the model files
    in ``model_dir``: ``{file name: sha256}`` of them, or ``None`` when the summary records no
    hashes (written by an older crop: it cannot be checked). A model file that differs from the
    one recorded, is missing, or is present without being recorded is a one-line error."""
    model_dir = Path(model_dir)
    recorded = _recorded(model_dir, summary)
    if recorded is None:
        return None
    for name in MODEL_FILES:
        path = model_dir / name
        if name not in recorded:
            if os.path.lexists(path):
                raise CropError(
                    f"{path} does not belong to the model {model_dir / SUMMARY} describes (the summary does not "
                    "list it: a file of another run, or an interrupted crop personalize); run crop personalize again"
                )
            continue
        if not path.is_file():
            raise CropError(
                f"{model_dir / SUMMARY} describes a {name} that is missing (an interrupted crop personalize?); "
                "run crop personalize again"
            )
        actual = sha256_file(path)
        if actual != recorded[name]:
            raise CropError(
                f"{path} does not belong to the model {model_dir / SUMMARY} describes (SHA-256 {actual[:12]}..., "
                f"recorded {recorded[name][:12]}...: files of two runs, e.g. an interrupted crop personalize or "
                "crop tune); run crop personalize again"
            )
    return recorded


def present_files(model_dir: str | Path) -> dict[str, str]:
    """``{file name: sha256}`` of the model files in ``model_dir``."""
    return {name: sha256_file(Path(model_dir) / name) for name in MODEL_FILES if (Path(model_dir) / name).is_file()}


def certificate_problem(certificate: dict[str, Any], model_files: dict[str, str]) -> str | None:
    """Why ``certify.json`` (``certificate``) cannot be shown beside the model files
    ``{file name: sha256}`` (:func:`present_files`); ``None`` when it certified one of them."""
    sha = certificate.get("model_sha256")
    if not isinstance(sha, str):
        return "it does not record the SHA-256 of the model file it certified (written by an older crop)"
    if sha not in model_files.values():
        return f"it certified another model file (SHA-256 {sha[:12]}...), not this directory's model"
    return None
