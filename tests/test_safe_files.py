"""Safe writes and safe model files: only regular files are ever replaced (a device node, a
FIFO, a symbolic link or a directory is refused and left untouched); weights with NaN or inf
values are never written and never loaded."""

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from crop.errors import CropError
from crop.models import HAPTNet, load_model, save_model
from crop.models.io import load_state, model_metadata
from crop.report.files import write_text_atomic


def identity(path):
    st = os.lstat(path)
    return (stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns)


def special_targets(tmp_path):
    (tmp_path / "real.txt").write_text("keep me\n")
    os.symlink(tmp_path / "real.txt", tmp_path / "link")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "adir").mkdir()
    return {
        "device": "/dev/null",
        "fifo": tmp_path / "pipe",
        "symlink": tmp_path / "link",
        "directory": tmp_path / "adir",
    }


@pytest.mark.parametrize("kind", ["device", "fifo", "symlink", "directory"])
def test_atomic_writes_refuse_special_files_and_links(tmp_path, kind):
    target = special_targets(tmp_path)[kind]
    before = identity(target)
    real = (tmp_path / "real.txt").read_text()
    with pytest.raises(CropError, match="refusing to write"):
        write_text_atomic(target, "{}")
    torch.manual_seed(0)
    with pytest.raises(CropError, match="refusing to write"):
        save_model(HAPTNet(), target)
    assert identity(target) == before and (tmp_path / "real.txt").read_text() == real
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "link", "pipe", "real.txt"]  # no temporary left


def test_regular_files_are_still_replaced(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def nan_copy(path, **changes):
    torch.manual_seed(0)
    model = HAPTNet()
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    state.update(changes)
    save_file(state, str(path), metadata=model_metadata(model))
    return path


def test_a_model_with_a_nan_tensor_is_refused_at_load(tmp_path):
    weight = HAPTNet().state_dict()["1.weight"].clone()
    weight[0, 0, 0] = float("nan")
    path = nan_copy(tmp_path / "nan.safetensors", **{"1.weight": weight})
    with pytest.raises(CropError, match="'1.weight' holds NaN or inf"):
        load_model(path)
    with pytest.raises(CropError, match="NaN or inf"):
        load_state(HAPTNet(), path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"0.std": torch.zeros(6, 1)}, "must be > 0"),
        ({"2.running_var": -torch.ones(16)}, "must be >= 0"),
        ({"1.weight": torch.ones(16, 6, 7, dtype=torch.int64)}, "dtype torch.int64"),
    ],
)
def test_broken_normalisation_buffers_and_integer_weights_are_refused(tmp_path, change, message):
    with pytest.raises(CropError, match=message):
        load_model(nan_copy(tmp_path / "m.safetensors", **change))


def test_non_finite_weights_are_never_written(tmp_path):
    model = HAPTNet()
    with torch.no_grad():
        model[1].weight.fill_(float("inf"))
    with pytest.raises(CropError, match="NaN or inf"):
        save_model(model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_training_refuses_a_diverging_or_empty_configuration_before_any_step(tiny_model, tiny_split):
    from crop.personalization.loop import TrainConfig, train

    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for config in (
        TrainConfig(epochs=-1),
        TrainConfig(lr=1e9),
        TrainConfig(batch_size=-8),
        TrainConfig(lr=float("nan")),
    ):
        with pytest.raises(CropError, match="training phase"):
            train(tiny_model, tiny_split.train, tiny_split.val, config)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())


def test_model_files_are_byte_reproducible(tmp_path):
    """The same model and metadata give the same bytes every time (safetensors alone orders the
    metadata differently from one save to the next), and the file reads back unchanged."""
    from safetensors import safe_open

    from crop.models.io import canonical_header, save_sparse

    torch.manual_seed(0)
    model = HAPTNet()
    extra = {f"key{i:02d}": f"value {i}" for i in range(10)} | {"note": "déjà vu"}
    blobs = set()
    for i in range(6):
        blobs.add(save_model(model, tmp_path / f"m{i}.safetensors", extra).read_bytes())
        blobs.add(save_sparse(model, tmp_path / f"s{i}.safetensors", max_density=1.0, metadata=extra).read_bytes())
    assert len(blobs) == 2  # one dense and one sparse file
    loaded = load_model(tmp_path / "m0.safetensors")
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    with safe_open(str(tmp_path / "m0.safetensors"), framework="pt") as f:
        assert f.metadata() == model_metadata(model, extra)
    header = (tmp_path / "m0.safetensors").read_bytes()
    n = int.from_bytes(header[:8], "little")
    assert header[8 : 8 + n].decode().startswith('{"__metadata__":{"crop_arch":"hapt_cnn","crop_config":')
    without = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(3)}, str(without))
    assert canonical_header(without.read_bytes()) == without.read_bytes()  # no metadata: nothing to order
