"""Size and CPU latency of dense, unstructured-sparse and structured-sparse (compact) HAPT models,
in PyTorch and onnxruntime, and (``--users``) the accuracy cost of structured pruning.

Part 1 (always): the shipped HAPT generic model, pruned at each density two ways: global
magnitude pruning of single weights (today's crop-certified) and channel / hidden-unit pruning
(:mod:`crop.certify.structured`) followed by compaction (:func:`crop.certify.compact.compact_model`).
Pruning is one-shot here because size and speed depend only on the sparsity pattern, not on how
the surviving weights were trained. Measured per model:

* file size: dense ``save_model`` of the masked model, CSR ``save_sparse`` (unstructured), dense
  ``save_model`` of the compact model (structured), and the ONNX file of each exported model;
* latency per window at batch 1 and batch 256 (time of one call / batch size; median of
  ``--repeats`` timed calls after warm-up) on **one thread** (``torch.set_num_threads(1)``,
  onnxruntime ``intra_op_num_threads = inter_op_num_threads = 1``): PyTorch dense module,
  PyTorch CSR module (``to_sparse_inference``, unstructured), PyTorch compact module, and
  onnxruntime (CPU provider) on the exported dense / masked / compact models (ONNX has no CSR
  path here: the masked model runs dense kernels on its zeros), and the TorchScript-traced,
  frozen module (``torch.jit.freeze``, which folds BatchNorm into the convolutions and cuts the
  per-layer Python overhead) for the dense and compact models; at batch 1 also onnxruntime with
  the input and output bound in advance (IOBinding, what a device runtime pays per call), and
  the same for a one-node Identity graph (onnxruntime's fixed cost per call).

Part 2 (``--users 2,5,...``): crop-certified personalization of each HAPT user (hapt-session:1,
the user's own fold's generic model) at each density with ``structure="none"`` and
``"channel"``, seed ``--seed``; balanced accuracy on the unseen session and verified accuracy
(IBP + CROWN, L-inf eps 0.01) on it.

Usage::

    nice -n 10 .venv/bin/python benchmarks/structured_sparsity.py --repeats 200 \
        --out docs/results/structured-sparsity.json
    nice -n 10 .venv/bin/python benchmarks/structured_sparsity.py --skip-latency --users 2,5,7 \
        --densities 0.1,0.05 --out docs/results/structured-sparsity-accuracy.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import crop
from crop.certify.compact import compact_model, parameter_count
from crop.certify.gradual_prune import density_of
from crop.certify.sparse import save_sparse, to_sparse_inference
from crop.certify.structured import channel_masks
from crop.models.io import save_model
from crop.models.utils import clone_model
from crop.personalization.prune import apply_masks, global_masks, magnitude_scores, prunable_names


def _time(fn, x, repeats: int) -> float:
    """Median seconds per window of ``fn(x)``."""
    for _ in range(max(10, repeats // 5)):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / x.shape[0]


def _onnx(model: nn.Module, path: Path):

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 6, 128),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        )
    session = _session(path)
    return lambda x: session.run(None, {"x": x})[0]


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _bound(path: Path, x: np.ndarray, output: str, out_shape: tuple[int, ...]):
    """One call of the ONNX model at ``path`` on ``x`` with input and output bound in advance
    (onnxruntime's IOBinding): what a device runtime pays per call, without the Python binding's
    conversion of the input and output arrays."""
    import onnxruntime as ort

    session = _session(path)
    binding = session.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x))
    binding.bind_ortvalue_output(output, ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32))
    return lambda _: session.run_with_iobinding(binding)


def onnx_floor_ms(repeats: int) -> float:
    """Latency of a one-node (Identity) ONNX graph on one window with IOBinding: onnxruntime's
    fixed cost per call, under every model's batch-1 figure."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 6, 128]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["logits"])],
        "floor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
    )
    x = np.zeros((1, 6, 128), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floor.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return 1000 * _time(_bound(path, x, "logits", x.shape), x, repeats)


def latency_table(densities: list[float], repeats: int) -> list[dict]:
    torch.set_num_threads(1)
    generic = crop.load_model(Path(crop.__file__).parent / "models" / "weights" / "hapt-generic.safetensors")
    generic.eval()
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.randn(b, 6, 128, generator=gen) for b in (1, 256)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        tmp = Path(tmp)
        names = prunable_names(generic, exclude_last=True)

        def measure(kind: str, density: float, model: nn.Module, file: Path, torch_model: nn.Module) -> None:
            onnx_path = tmp / f"{kind}{density}.onnx"
            run_onnx = _onnx(model, onnx_path)
            row = {
                "kind": kind,
                "density": density,
                "file_bytes": file.stat().st_size,
                "onnx_bytes": onnx_path.stat().st_size,
                "parameters": parameter_count(model),
                "widths": getattr(model, "config", {}).get("widths"),
            }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frozen = None if kind == "unstructured" else torch.jit.freeze(torch.jit.trace(model, inputs[1]))
            for b, x in inputs.items():
                n = repeats if b == 1 else max(5, repeats // 10)
                row[f"torch_ms_b{b}"] = 1000 * _time(torch_model, x, n)
                row[f"jit_ms_b{b}"] = None if frozen is None else 1000 * _time(frozen, x, n)
                row[f"onnx_ms_b{b}"] = 1000 * _time(run_onnx, x.numpy(), n)
            x1 = inputs[1].numpy()
            row["onnx_bound_ms_b1"] = 1000 * _time(_bound(onnx_path, x1, "logits", (1, 6)), x1, repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)

        _time(generic, inputs[256], 20)  # warm the process up before the first timed model
        measure("dense", 1.0, generic, save_model(generic, tmp / "dense.safetensors"), generic)
        rows.pop()  # the first timed model still pays the process's warm-up (2x at batch 1): again
        measure("dense", 1.0, generic, save_model(generic, tmp / "dense.safetensors"), generic)
        for density in (d for d in densities if d < 1):
            masks = global_masks(magnitude_scores(generic, names), 1 - density)
            unstructured = apply_masks(clone_model(generic).eval(), masks)
            file = save_sparse(unstructured, tmp / f"u{density}.safetensors")
            measure("unstructured", density_of(masks), unstructured, file, to_sparse_inference(unstructured))
            weights, fixed = channel_masks(generic, density)
            masked = apply_masks(clone_model(generic).eval(), fixed)
            compact = compact_model(masked)
            for x in inputs.values():
                assert torch.allclose(compact(x), masked(x), atol=1e-5), "compact != masked"
            file = save_model(compact, tmp / f"s{density}.safetensors")
            measure("structured", density_of(weights), compact, file, compact)
    return rows


def accuracy_table(users: list[int], densities: list[float], seed: int) -> list[dict]:
    from crop.certify.margin import verified_accuracy
    from crop.data.scenarios import build_user_scenario, parse_scenarios
    from crop.generic import generic_for_user
    from crop.models.utils import score

    torch.set_num_threads(1)
    scenario = parse_scenarios("hapt-session:1")[0]
    rows = []
    for user in users:
        us = build_user_scenario(user, scenario, seed)
        generic, _ = generic_for_user("hapt", user)
        (unseen,) = us.unseen.values()
        X, y = torch.as_tensor(unseen.X), torch.as_tensor(np.asarray(unseen.y))
        for density in densities:
            for structure in ("none", "channel"):
                t0 = time.perf_counter()
                config = {"density": density, "structure": structure}
                result = crop.personalize(generic, us.available, config, method="crop-certified", seed=seed)
                model = result.info.get("compact_model", result.model).eval()
                row = {
                    "user": user,
                    "density_target": density,
                    "structure": structure,
                    "density": result.info["density"],
                    "unseen_balanced_accuracy": score(model, unseen),
                    "unseen_verified_0.01": verified_accuracy(model, X, y, 0.01, "linf"),
                    "parameters": parameter_count(model),
                    "seconds": time.perf_counter() - t0,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--densities", default="1,0.5,0.1,0.05")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--users", default="", help="comma-separated HAPT users for the accuracy part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    densities = [float(d) for d in args.densities.split(",")]
    out: dict = {"torch": torch.__version__, "threads": 1}
    if not args.skip_latency:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
        out["latency"] = latency_table(densities, args.repeats)
        out["onnx_floor_ms_b1"] = onnx_floor_ms(args.repeats)
    if args.users:
        out["accuracy"] = accuracy_table(
            [int(u) for u in args.users.split(",")], [d for d in densities if d < 1], args.seed
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
