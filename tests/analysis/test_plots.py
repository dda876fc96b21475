"""Every figure function writes a PNG (content is checked by eye in docs/ANALYSIS.md)."""

import numpy as np
import torch

from crop.analysis import (
    plot_gip,
    plot_prune_curve,
    plot_state_deltas,
    plot_tsne,
    plot_user_lines,
    plot_user_means,
    plot_weight_heatmaps,
)
from crop.analysis._plots import as_matrix

PNG = b"\x89PNG\r\n\x1a\n"


def test_as_matrix_flattens_all_but_the_output_dimension():
    w = torch.arange(24.0).reshape(2, 3, 4) - 12
    m = as_matrix(w)
    assert m.shape == (2, 12) and (m >= 0).all() and m[0, 0] == 12


def test_every_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    files = [
        plot_weight_heatmaps(
            {"a": torch.randn(4, 6), "b": torch.randn(4, 6)}, tmp_path / "h.png", masks=torch.rand(4, 6) > 0.5
        ),
        plot_tsne(
            {("s", "c"): (rng.normal(size=(9, 2)), np.arange(9) % 3, 0.5)},
            tmp_path / "t.png",
            class_names=["x", "y", "z"],
        ),
        plot_state_deltas({"generic": {"c": 0.5, "u": 0.4}, "final": {"c": 0.9, "u": 0.3}}, tmp_path / "d.png"),
        plot_gip([{"state": "g", "subset": "all", "context": "u", "gip": 1.0, "cosine": 0.2}], tmp_path / "g.png"),
        plot_prune_curve([(0.1, 0.9), (0.2, 0.7)], 0.95, 0.1, 0.1, tmp_path / "p.png"),
        plot_user_means({"m": {"c": {1: 0.5, 2: 0.7}}, "n": {"c": {1: 0.6, 2: 0.8}}}, tmp_path / "m.png"),
        plot_user_lines({1: {"a": 0.1, "b": -0.2}, 2: {"a": 0.3, "b": 0.0}}, tmp_path / "l.png", ylabel="cos"),
    ]
    for f in files:
        assert f.read_bytes()[:8] == PNG
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporary files
