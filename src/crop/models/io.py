"""Save and load models as safetensors, never unpickling.

A file written by :func:`save_model` holds the tensors of ``state_dict()`` and, in the
safetensors metadata, the architecture name and its constructor arguments, so
:func:`load_model` can rebuild a built-in architecture. Models of other classes are saved the
same way and loaded into a module the caller constructs (:func:`load_state`).

Files are byte-reproducible: the same tensors and metadata always give the same bytes (and so
the same SHA-256). safetensors 0.8 writes the metadata entries in the iteration order of a Rust
hash map, which changes from one save to the next (upstream issue safetensors#584, open);
:func:`canonical_header` sorts them in the header the library wrote, changing nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from crop.errors import CropError
from crop.models.hapt import HAPTNet
from crop.models.modality import CoTeachNet, MaskedHAPTNet
from crop.models.paper import ExtraSensoryCNNGRU, PerceptBiLSTM, StressMLP, WidarLeNet
from crop.models.sparse_format import decode_sparse, encode_sparse
from crop.outputs import check_write_target
from crop.report.files import write_bytes_atomic

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "hapt_cnn": HAPTNet,
    "hapt_masked": MaskedHAPTNet,
    "hapt_coteach": CoTeachNet,
    "stress_mlp": StressMLP,
    "widar_lenet": WidarLeNet,
    "extrasensory_cnn_gru": ExtraSensoryCNNGRU,
    "percept_bilstm": PerceptBiLSTM,
}


def _routed(**config: Any) -> nn.Module:
    """A :class:`~crop.models.routed.RoutedModel` from its recorded config: the two networks'
    built-in architectures and configs (as JSON strings) and the routing's own values."""
    from crop.models.routed import RoutedModel

    parts = {}
    for role in ("generic", "personal"):
        arch = config.pop(f"{role}_arch", None)
        if arch not in ARCHITECTURES or arch == "routed":
            raise ValueError(f"a routed model's {role} network has no built-in architecture ({arch!r})")
        parts[role] = ARCHITECTURES[arch](**_architecture_config(str(config.pop(f"{role}_config", "{}"))))
    spaces = str(config.pop("spaces", "")).split(",")
    return RoutedModel(parts["generic"], parts["personal"], spaces=spaces, **config)


ARCHITECTURES["routed"] = _routed


def architecture_name(model: nn.Module) -> str | None:
    from crop.models.routed import RoutedModel

    if isinstance(model, RoutedModel):
        inner = (architecture_name(model.generic), architecture_name(model.personal))
        return "routed" if None not in inner and "routed" not in inner else None
    for name, factory in ARCHITECTURES.items():
        if type(model) is factory:
            return name
    return None


def architecture_config(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments :func:`load_model` rebuilds ``model`` from (plain values)."""
    from crop.models.routed import RoutedModel

    if not isinstance(model, RoutedModel):
        return dict(getattr(model, "config", {}))
    config = {k: v for k, v in model.config.items() if k != "spaces"}
    config["spaces"] = ",".join(model.config["spaces"])
    for role, net in (("generic", model.generic), ("personal", model.personal)):
        config[f"{role}_arch"] = architecture_name(net)
        config[f"{role}_config"] = json.dumps(architecture_config(net), sort_keys=True)
    return config


def model_metadata(model: nn.Module, metadata: dict[str, Any] | None = None) -> dict[str, str]:
    """File metadata: format, the architecture (if built-in) and its config, and ``metadata``."""
    meta = {"crop_format": "1"}
    arch = architecture_name(model)
    if arch is not None:
        meta["crop_arch"] = arch
        meta["crop_config"] = json.dumps(architecture_config(model))
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return meta


MAX_ABS_WEIGHT = 1e12  # the largest variance of data within crop.data.sensing.MAX_ABS_VALUE (1e6 squared)


def check_tensors(
    tensors: dict[str, torch.Tensor], where: str, expected: dict[str, torch.Tensor] | None = None
) -> None:
    """Refuse (one line) weights that cannot be a working model: a NaN or inf value, a value
    beyond :data:`MAX_ABS_WEIGHT` in magnitude (where float32 arithmetic overflows after a layer
    or two), an integer or complex tensor where the model holds floating-point numbers
    (``expected``: the model's own state), a normalisation ``std`` that is not > 0 or a
    BatchNorm ``running_var`` below 0. The one place every model file read or written is checked."""
    for name, t in tensors.items():
        want = expected.get(name) if expected is not None else None
        if t.is_complex() or (want is not None and want.is_floating_point() and not t.is_floating_point()):
            need = want.dtype if want is not None else "a real floating-point type"
            raise CropError(f"{where}: tensor {name!r} has dtype {t.dtype}, expected {need}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CropError(f"{where}: tensor {name!r} holds NaN or inf values")
        if t.is_floating_point() and t.numel() and float(t.abs().max()) > MAX_ABS_WEIGHT:
            raise CropError(
                f"{where}: tensor {name!r} holds a value of magnitude {float(t.abs().max()):.3g}; model files hold "
                f"values up to {MAX_ABS_WEIGHT:g} (crop.models.io.MAX_ABS_WEIGHT)"
            )
        leaf = name.rpartition(".")[2]
        if leaf == "std" and t.numel() and not bool((t > 0).all()):
            raise CropError(f"{where}: normalisation buffer {name!r} must be > 0 (found {float(t.min()):g})")
        if leaf == "running_var" and t.numel() and not bool((t >= 0).all()):
            raise CropError(f"{where}: BatchNorm buffer {name!r} must be >= 0 (found {float(t.min()):g})")


def canonical_header(blob: bytes) -> bytes:
    """The safetensors file ``blob`` with the ``__metadata__`` entries of its JSON header in
    sorted order; the tensors' entries, the header's length and the data are kept. A header this
    function cannot rewrite to the same length is returned unchanged (still a valid file)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    if meta is None:
        return blob
    ordered = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:
        return blob
    return blob[:8] + text.ljust(n, b" ") + blob[8 + n :]  # the format pads headers with spaces


def tensors_bytes(tensors: dict[str, torch.Tensor], meta: dict[str, str], where: str | Path) -> bytes:
    """The bytes of a safetensors file of ``tensors``, byte-reproducible
    (:func:`canonical_header`); weights with NaN or inf values are refused (``where`` names the
    file in the message)."""
    check_tensors(tensors, f"refusing to write {where}")
    return canonical_header(safetensors_bytes(tensors, metadata=meta))


def write_tensors(tensors: dict[str, torch.Tensor], path: str | Path, meta: dict[str, str]) -> Path:
    """Write a safetensors file atomically (a reader never sees a half-written file) and
    byte-reproducibly (:func:`canonical_header`). Weights with NaN or inf values are never
    written, and only a regular file is ever replaced."""
    path = check_write_target(path)
    return write_bytes_atomic(path, tensors_bytes(tensors, meta, path))


def model_bytes(model: nn.Module, metadata: dict[str, Any] | None = None, where: str | Path = "a model file") -> bytes:
    """The bytes :func:`save_model` writes."""
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return tensors_bytes(tensors, model_metadata(model, metadata), where)


def sparse_bytes(
    model: nn.Module,
    *,
    max_density: float = 0.5,
    metadata: dict[str, Any] | None = None,
    where: str | Path = "a sparse model file",
) -> bytes:
    """The bytes :func:`save_sparse` writes."""
    tensors, sparse_meta = encode_sparse(model.state_dict(), max_density=max_density)
    return tensors_bytes(tensors, {**model_metadata(model, metadata), **sparse_meta}, where)


def save_model(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s state (and its architecture, if built-in) atomically to ``path``."""
    path = check_write_target(path)
    return write_bytes_atomic(path, model_bytes(model, metadata, path))


def save_sparse(
    model: nn.Module, path: str | Path, *, max_density: float = 0.5, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model.state_dict()`` to ``path`` with sparse tensors in CSR form (atomically; the
    format is described in :mod:`crop.models.sparse_format`)."""
    path = check_write_target(path)
    return write_bytes_atomic(path, sparse_bytes(model, max_density=max_density, metadata=metadata, where=path))


def read_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; one-line :class:`CropError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CropError(f"model file not found: {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CropError(f"{path}: not a valid safetensors model file ({exc})") from None
    return tensors, meta


def read_dense(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Like :func:`read_file`, with the CSR tensors of a sparse file expanded to dense ones."""
    tensors, meta = read_file(path)
    if "crop_sparse" in meta:
        tensors = decode_sparse(tensors, meta, path)
    return tensors, meta


def load_sparse_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Dense state dict and metadata of a file written by :func:`save_sparse`."""
    raw, meta = read_file(path)
    return decode_sparse(raw, meta, path), meta


def load_state(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights in ``path`` (dense or sparse file) into ``model`` (strict), with a
    one-line error on mismatch."""
    tensors, _ = read_dense(path)
    check_tensors(tensors, str(path), model.state_dict())
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CropError(
            f"{path}: weights do not fit the model ({first[1].strip() if len(first) > 1 else first[0]})"
        ) from None
    return model


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a built-in architecture from a file written by :func:`save_model` (or by
    :func:`save_sparse`: sparse tensors are expanded to dense ones)."""
    tensors, meta = read_dense(path)
    arch = meta.get("crop_arch")
    if arch not in ARCHITECTURES:
        raise CropError(
            f"{path}: no built-in architecture recorded (found {arch!r}); load it into your own module with crop.load_state"
        )
    try:
        config = _architecture_config(meta.get("crop_config", "{}"))
        with torch.device("meta"):  # shapes first: a recorded config never allocates more than the file holds
            skeleton = ARCHITECTURES[arch](**config).state_dict()
        wrong = sorted(k for k in skeleton.keys() & tensors.keys() if skeleton[k].shape != tensors[k].shape)
        if skeleton.keys() != tensors.keys() or wrong:
            missing = sorted(skeleton.keys() - tensors.keys()) or sorted(tensors.keys() - skeleton.keys()) or wrong
            raise ValueError(f"tensor(s) {', '.join(missing[:3])} missing, unexpected or of another shape")
        check_tensors(tensors, str(path), skeleton)
        model = ARCHITECTURES[arch](**config)
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, CropError):
            raise
        raise CropError(f"{path}: weights do not match architecture {arch} ({str(exc).splitlines()[0]})") from None
    return model.eval()


def _architecture_config(text: str) -> dict[str, Any]:
    """The constructor arguments recorded in a file: a JSON object of plain values (numbers,
    strings, booleans, or a short list of integers such as a compact network's ``widths``)."""
    config = json.loads(text)

    def plain(v: Any) -> bool:
        if isinstance(v, list):
            return len(v) <= 64 and all(isinstance(i, int) and not isinstance(i, bool) for i in v)
        return isinstance(v, int | float | str | bool)

    if not isinstance(config, dict) or not all(plain(v) for v in config.values()):
        raise ValueError(f"crop_config must be a JSON object of numbers and strings, got {text[:60]!r}")
    return config


def metadata_of(path: str | Path) -> dict[str, str]:
    return read_file(path)[1]
