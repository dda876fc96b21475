"""ONNX export of crop model files, checked and run before it is written.

A personalized model is only useful once it runs on the person's device, and devices run ONNX
(onnxruntime on phones, a Raspberry Pi, a browser). :func:`export_model` traces an
``nn.Module`` with torch's ONNX exporter (the TorchScript-based one, ``dynamo=False``: it needs
no package beyond ``onnx``, and it exports every architecture of the paper, the GRU and
bidirectional LSTM included), then, before anything is written:

1. ``onnx.checker.check_model`` validates the graph;
2. onnxruntime runs it on a batch of inputs drawn around the model's own input statistics and
   the largest difference to PyTorch's output is measured (the file is refused if it exceeds
   ``tolerance``);
3. the model's description goes into the file's ``metadata_props``: class names, input shape,
   method, seed, the SHA-256 of the generic model when known, of the crop file exported, and
   the crop version, so a device app can tell what it runs.

The file is then written atomically (a reader never sees half a file). A model whose layer
has no ONNX equivalent gets a one-line :class:`~crop.errors.CropError` naming that layer:
the exporter's own error names only the operator, so each layer is exported alone, with the
input it received in a forward pass, to find the first one that fails.

Sparse crop files (``model.sparse.safetensors``) are read through
:func:`crop.models.io.load_model`, which expands them to dense tensors; the ONNX graph holds
dense weights with the pruned ones at zero (ONNX has no sparse initializer that onnxruntime's
CPU kernels use).

``onnx`` and ``onnxruntime`` are an optional extra: ``pip install 'crop[onnx]'``.

Example::

    from crop.deploy.export import export_file
    result = export_file("out/u2/model.safetensors", "model.onnx")
    print(result.max_abs_diff)
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from crop.errors import CropError
from crop.outputs import check_write_target
from crop.report.files import write_bytes_atomic

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17  # onnxruntime >= 1.12 and every mobile build of the last years run it
HAPT_ACTIVITIES = ("walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying")
DEFAULT_FRAMES = 100  # PerceptBiLSTM reads any number of frames; export with this many unless told


def require(name: str) -> ModuleType:
    """Import ``onnx`` or ``onnxruntime``, or a one-line error saying what to install."""
    try:
        return __import__(name)
    except ImportError:
        raise CropError(
            f"ONNX export needs the {name} package: pip install 'crop[onnx]' (installs onnx and onnxruntime)"
        ) from None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MAX_INPUT_AXES = 8
MAX_INPUT_ELEMENTS = 2**16  # numbers in one sample; the built-in networks take 34 to 8800


def check_input_shape(shape: tuple[int, ...]) -> None:
    """One sample's shape is 1 to :data:`MAX_INPUT_AXES` positive integers whose product is at
    most :data:`MAX_INPUT_ELEMENTS` (checked before any example input is made); one line otherwise."""
    if not 1 <= len(shape) <= MAX_INPUT_AXES or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise CropError(f"an input shape is 1 to {MAX_INPUT_AXES} positive integers, got {list(shape)[:10]}")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise CropError(
            f"input shape {list(shape)} has {math.prod(shape)} numbers per sample; at most {MAX_INPUT_ELEMENTS} "
            "(crop.deploy.export.MAX_INPUT_ELEMENTS)"
        )


def input_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """The per-sample input shape of a built-in architecture, from its recorded config (a routed
    model's: its generic network's)."""
    inner = getattr(model, "generic", None)
    if type(model).__name__ == "RoutedModel" and isinstance(inner, nn.Module):
        return input_shape_of(inner)
    config = getattr(model, "config", {})
    name = type(model).__name__
    if name == "HAPTNet" or name == "ExtraSensoryCNNGRU":
        return (config["channels"], config["length"])
    if name == "StressMLP":
        return (config["in_features"],)
    if name == "WidarLeNet":
        return (config["frames"], config["size"], config["size"])
    if name == "PerceptBiLSTM":
        return (config["features"], DEFAULT_FRAMES)
    return None


def class_names(model: nn.Module, n_classes: int) -> list[str]:
    """HAPT's six activities for the HAPT network, else the class indices as text."""
    if type(model).__name__ == "RoutedModel":
        return class_names(model.generic, n_classes)
    if type(model).__name__ == "HAPTNet" and n_classes == len(HAPT_ACTIVITIES):
        return list(HAPT_ACTIVITIES)
    return [str(i) for i in range(n_classes)]


def example_inputs(model: nn.Module, shape: tuple[int, ...], n: int = 16, seed: int = 0) -> torch.Tensor:
    """``n`` inputs of ``shape`` drawn as ``mean + std * N(0, 1)`` with the statistics of the
    model's first ``Standardize`` layer (standard normal without one), so the check runs the
    model where real data puts it, not far outside its input range. A model with an
    ``export_examples(x)`` method extends them with inputs that take its other paths (the
    fault-routing networks of :mod:`crop.models.modality` add windows with a dead sensor, a
    spike, a non-finite reading), so the parity check covers every branch of the graph."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=gen)
    stats = next((m for m in model.modules() if type(m).__name__ == "Standardize"), None)
    if stats is not None and tuple(stats.mean.shape) == tuple(shape[: stats.mean.dim()]):
        x = stats.mean + stats.std * x
    extend = getattr(model, "export_examples", None)  # a model with input-dependent paths adds inputs taking them
    return extend(x) if callable(extend) else x


def _export_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return buffer.getvalue()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def unexportable_layer(model: nn.Module, example: torch.Tensor) -> tuple[str, str, str] | None:
    """``(name, class, reason)`` of the first layer (in call order, innermost first) that torch's
    ONNX exporter cannot export on its own, or ``None`` if every layer exports."""
    seen: list[tuple[str, nn.Module, tuple[Any, ...]]] = []
    hooks = [
        module.register_forward_hook(lambda m, args, out, name=name: seen.append((name, m, args)))
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    # hooks fire when a layer returns, so an inner layer comes before the layer that holds it
    for name, module, args in seen:
        if len(args) != 1 or not isinstance(args[0], torch.Tensor):
            continue  # e.g. TakeOutput receives an RNN's tuple; its producer is tried instead
        try:
            _export_bytes(module, args[0])
        except Exception as exc:  # the exporter raises many kinds; each names one problem
            return name, type(module).__name__, _first_line(exc)
    return None


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how well onnxruntime matched PyTorch."""

    path: Path
    bytes: int
    max_abs_diff: float
    metadata: dict[str, str]


def onnx_session(model: str | Path | bytes, threads: int = 1) -> Any:
    """An onnxruntime CPU session on ``threads`` threads (intra- and inter-op)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.log_severity_level = 4  # fatal only: failures reach the caller as one CropError line
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_session(session: Any, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Logits ``(batch, n_classes)`` of an onnxruntime session for inputs ``x``."""
    array = x.detach().numpy() if isinstance(x, torch.Tensor) else x
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(array, dtype=np.float32)})[0]


def export_model(
    model: nn.Module,
    out: str | Path,
    *,
    input_shape: tuple[int, ...] | None = None,
    metadata: dict[str, Any] | None = None,
    tolerance: float = 1e-4,
) -> ExportResult:
    """Export ``model`` (eval mode, batch axis dynamic) to the ONNX file ``out``.

    ``input_shape`` is one sample's shape (default: the built-in architecture's). ``metadata``
    entries are added to the file's ``metadata_props`` (values that are not text as JSON).
    Raises :class:`CropError` (one line, nothing written) if a layer cannot be exported, the
    checker rejects the graph or onnxruntime's output differs from PyTorch's by more than
    ``tolerance`` (absolute, on the logits).
    """
    onnx = require("onnx")
    require("onnxruntime")
    out = check_write_target(out)
    model = copy.deepcopy(model).eval()
    shape = tuple(input_shape) if input_shape is not None else input_shape_of(model)
    if shape is None:
        raise CropError(f"the input shape of a {type(model).__name__} is not known: give --input-shape")
    check_input_shape(shape)
    example = example_inputs(model, shape)
    try:
        with torch.no_grad():
            expected = model(example)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CropError(f"the model does not accept inputs of shape {list(shape)}: {_first_line(exc)}") from None
    if not bool(torch.isfinite(expected).all()):
        raise CropError("the model's outputs are not finite numbers (its weights overflow float32 arithmetic)")
    try:
        raw = _export_bytes(model, example[:1])
    except Exception as exc:  # find the layer, then say it in one line
        culprit = unexportable_layer(model, example[:1])
        if culprit is None:
            raise CropError(f"cannot export {type(model).__name__} to ONNX: {_first_line(exc)}") from None
        name, kind, reason = culprit
        raise CropError(f"cannot export layer {name!r} ({kind}) to ONNX: {reason}") from None
    proto = onnx.load_from_string(raw)
    n_classes = int(expected.shape[-1])
    props = {
        "crop_version": _crop_version(),
        "classes": json.dumps(class_names(model, n_classes)),
        "input_shape": json.dumps(["batch", *shape]),
        "input_name": INPUT_NAME,
        "output": f"{OUTPUT_NAME}: unnormalised class scores (batch, {n_classes}); argmax is the class",
        "architecture": type(model).__name__,
    }
    for key, value in (metadata or {}).items():
        if value is not None:
            props[str(key)] = value if isinstance(value, str) else json.dumps(value)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        raise CropError(f"the exported graph fails onnx.checker: {_first_line(exc)}") from None
    data = proto.SerializeToString()
    try:
        got = run_session(onnx_session(data), example)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument kinds
        raise CropError(
            f"the exported graph does not run in onnxruntime on a batch of {len(example)} "
            f"(a size fixed when it was traced?): {_first_line(exc)}"
        ) from None
    diff = float(np.max(np.abs(got - expected.numpy()))) if got.shape == tuple(expected.shape) else float("inf")
    if not diff <= tolerance:
        raise CropError(f"onnxruntime's output differs from PyTorch's by {diff:.3g} (> {tolerance:g}); not written")
    path = write_bytes_atomic(out, data)
    return ExportResult(path, len(data), diff, props)


def export_file(
    model_path: str | Path,
    out: str | Path,
    *,
    generic: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    tolerance: float = 1e-4,
) -> ExportResult:
    """Export a crop model file (dense or sparse safetensors of a built-in architecture).

    The method and seed recorded by ``crop personalize`` travel into the ONNX metadata, with the
    SHA-256 of ``generic`` (the generic model file) or the one the model file records.
    """
    from crop.models.io import load_model, metadata_of

    model_path = Path(model_path)
    meta = metadata_of(model_path)
    model = load_model(model_path)
    if generic is not None:
        if not Path(generic).is_file():
            raise CropError(f"--generic: file not found: {generic}")
        generic_sha = sha256_file(generic)
    else:
        generic_sha = meta.get("generic_sha256")
    extra = {
        "method": _plain(meta.get("method")),
        "seed": _plain(meta.get("seed")),
        "generic_sha256": generic_sha,
        "source_sha256": sha256_file(model_path),
        "source_format": "sparse" if "crop_sparse" in meta else "dense",
        "nonzero_parameters": str(sum(int((p != 0).sum()) for p in model.parameters())),
        "parameters": str(sum(p.numel() for p in model.parameters())),
    }
    return export_model(model, out, input_shape=input_shape, metadata=extra, tolerance=tolerance)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file."""
    onnx = require("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a truncated or foreign file
        raise CropError(f"{path}: not a readable ONNX file ({_first_line(exc)})") from None
    return {p.key: p.value for p in proto.metadata_props}


def _plain(value: str | None) -> str | None:
    """A metadata value written as JSON by :func:`crop.models.io.model_metadata`, as plain text."""
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        return value
    return decoded if isinstance(decoded, str) else value


def _crop_version() -> str:
    import crop

    return str(getattr(crop, "__version__", "unknown"))
