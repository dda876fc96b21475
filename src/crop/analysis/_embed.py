"""Embeddings (the input of the decision layer) and their t-SNE projection (Figure 5)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from crop.errors import CropError


def last_linear_name(model: nn.Module) -> str:
    """Name of the last ``nn.Linear`` module in registration order (the decision layer)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise CropError("the model has no nn.Linear layer whose input could serve as the embedding")
    return names[-1]


@torch.no_grad()
def embeddings(
    model: nn.Module, X: np.ndarray | torch.Tensor, *, layer: str | None = None, batch_size: int = 1024
) -> np.ndarray:
    """The input of ``layer`` (default: the last Linear) for each window, shape ``(n, features)``.

    Captured with a forward hook in eval mode; the model's mode is restored afterwards.
    """
    module = model.get_submodule(layer if layer is not None else last_linear_name(model))
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1)))
    was_training = model.training
    model.eval()
    X = torch.as_tensor(X, dtype=torch.float32)
    try:
        for start in range(0, len(X), batch_size):
            model(X[start : start + batch_size])
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured).numpy() if captured else np.zeros((0, 0), dtype=np.float32)


def tsne_2d(features: np.ndarray, *, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA initialisation) of ``features`` ``(n, d)``; seeded.

    ``perplexity`` defaults to ``min(30, (n - 1) / 3)`` so that small contexts work.
    """
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 4:
        raise CropError(f"t-SNE needs at least 4 windows, got {n}")
    perplexity = perplexity if perplexity is not None else max(1.0, min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=1000)
    return tsne.fit_transform(np.asarray(features, dtype=np.float64))
