"""PTN, the personalized triplet network (Burns, Boyer, Arrowsmith & Whyne, "Personalized
activity recognition with deep triplet embeddings", Sensors 2022), adapted to static
personalization.

PTN learns an embedding with a triplet loss, which pulls windows of the same activity together
and pushes different activities at least ``margin`` apart, and classifies a window by k-nearest
neighbours among the *person's own* labelled reference embeddings.

Here:

- the embedding network is the generic model without its decision layer (the last
  Linear/Conv/RNN module is replaced by ``nn.Identity``), so training starts from the generic
  model's penultimate features; this requires that the model's output is that layer applied to
  its input, which is checked;
- the triplet loss is trained on the labelled available-context training windows with online
  mining inside each batch (``"batch_all"``: the mean over all valid triplets with positive loss;
  ``"batch_hard"``: hardest positive and negative per anchor), on L2-normalised embeddings;
- the references are the embeddings of ``available.train``, refreshed before every validation,
  so the loop's checkpoint selection scores the k-NN classifier itself on ``available.val``;
- the result is a :class:`NearestReferenceClassifier`, an ``nn.Module`` that returns one score
  per class, so it is evaluated, certified and saved like any other model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.data.sensing import ContextSplit, SensingData
from crop.errors import CropError
from crop.models.utils import clone_model, predict_logits, state_copy
from crop.personalization.baselines._common import replace_head
from crop.personalization.loop import Hook, Objective, TrainConfig, train
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class PTNConfig:
    """Hyperparameters of PTN.

    Attributes:
        margin: triplet margin (on unit-norm embeddings when ``normalize``).
        mining: ``"batch_all"`` or ``"batch_hard"`` online triplet mining within each batch.
        normalize: L2-normalise embeddings (for the loss and the k-NN).
        k: neighbours of the k-NN classifier (1: nearest reference).
        train: the embedding training phase, best validation epoch of the k-NN kept.
    """

    margin: float = 0.2
    mining: Literal["batch_all", "batch_hard"] = "batch_all"
    normalize: bool = True
    k: int = 1
    train: TrainConfig = field(default_factory=TrainConfig)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(len(a), len(b))``, with a finite gradient at zero distance."""
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return d2.clamp_min(1e-12).sqrt()


def triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, mining: str = "batch_all"
) -> torch.Tensor:
    """Online triplet loss over a batch ``(n, d)`` with labels ``(n,)``.

    ``batch_all``: ``mean(relu(d(a,p) - d(a,n) + margin))`` over the valid triplets with positive
    loss; ``batch_hard``: per anchor, its farthest positive and nearest negative. Zero (with a
    gradient path) when the batch has no valid triplet.
    """
    d = pairwise_distances(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    if mining == "batch_all":
        losses = (d[:, :, None] - d[:, None, :] + margin).relu()
        valid = pos[:, :, None] & neg[:, None, :]
        active = valid & (losses > 0)
        if not bool(active.any()):
            return embeddings.sum() * 0.0
        return losses[active].mean()
    if mining == "batch_hard":
        hardest_pos = d.masked_fill(~pos, -float("inf")).amax(1)
        hardest_neg = d.masked_fill(~neg, float("inf")).amin(1)
        ok = pos.any(1) & neg.any(1)
        if not bool(ok.any()):
            return embeddings.sum() * 0.0
        return (hardest_pos[ok] - hardest_neg[ok] + margin).relu().mean()
    raise CropError(f"ptn: unknown mining {mining!r}; choose batch_all or batch_hard")


class NearestReferenceClassifier(nn.Module):
    """k-NN over reference embeddings, as a module returning class scores ``(batch, n_classes)``.

    With ``k == 1`` the score of class c is minus the distance to the nearest reference of class
    c, so the argmax is the label of the nearest reference. With ``k > 1`` it is the number of
    the k nearest references labelled c, minus half the (row-normalised, in [0, 1]) distance to
    the nearest reference of c, which only breaks ties between equal vote counts.

    Buffers ``references`` ``(m, d)`` and ``reference_labels`` ``(m,)`` hold the person's
    embedded training windows; :meth:`set_references` recomputes them.
    """

    def __init__(
        self, embed: nn.Module, n_classes: int, embedding_dim: int, k: int = 1, normalize: bool = True
    ) -> None:
        super().__init__()
        if k < 1:
            raise CropError(f"ptn: k must be >= 1, got {k}")
        self.embed = embed
        self.n_classes = n_classes
        self.k = k
        self.normalize = normalize
        self.register_buffer("references", torch.zeros(0, embedding_dim))
        self.register_buffer("reference_labels", torch.zeros(0, dtype=torch.long))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x).reshape(len(x), -1)
        return F.normalize(e, dim=1) if self.normalize else e

    @torch.no_grad()
    def set_references(
        self, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, batch_size: int = 1024
    ) -> None:
        was_training = self.training
        self.eval()
        try:
            X = torch.as_tensor(X, dtype=torch.float32)
            self.references = torch.cat([self.embedding(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])
            self.reference_labels = torch.as_tensor(y, dtype=torch.long).clone()
        finally:
            self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.reference_labels) == 0:
            raise CropError("ptn: the classifier has no reference embeddings (call set_references)")
        d = pairwise_distances(self.embedding(x), self.references)  # (batch, m)
        member = F.one_hot(self.reference_labels, self.n_classes).bool()  # (m, K)
        nearest = d[:, :, None].masked_fill(~member[None], float("inf")).amin(1)  # (batch, K)
        if self.k == 1:
            return -nearest
        k = min(self.k, d.shape[1])
        idx = d.topk(k, dim=1, largest=False).indices
        votes = F.one_hot(self.reference_labels[idx], self.n_classes).sum(1).to(d.dtype)
        finite = nearest.masked_fill(~torch.isfinite(nearest), 0.0)
        scale = finite.amax(1, keepdim=True).clamp_min(1e-12)
        tie_break = torch.where(torch.isfinite(nearest), nearest / scale, torch.ones_like(nearest))
        return votes - 0.5 * tie_break


class RefreshReferences(Hook):
    """Re-embed the references with the current weights before each validation."""

    def __init__(self, data: SensingData) -> None:
        self.data = data

    def before_validation(self, model: nn.Module) -> None:
        model.set_references(self.data.X, self.data.y)


def ptn_objective(config: PTNConfig) -> Objective:
    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return triplet_loss(model.embedding(x), y, config.margin, config.mining)

    return objective


def embedding_network(generic: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``generic`` without its decision layer, and the embedding size.

    Raises :class:`CropError` unless ``generic(x) == head(embedding(x))`` on ``example``.
    """
    embed = clone_model(generic)
    head = replace_head(embed, nn.Identity())
    try:
        features = predict_logits(embed, example)
        ok = isinstance(features, torch.Tensor) and torch.allclose(
            predict_logits(head, features), predict_logits(generic, example), rtol=1e-4, atol=1e-5
        )
    except (RuntimeError, TypeError):
        ok = False
    if not ok:
        raise CropError(
            "ptn: the model's output is not its last layer applied to that layer's input, "
            "so it cannot be split into an embedding network and a classifier"
        )
    return embed, int(features.reshape(len(features), -1).shape[1])


@register_method("ptn", PTNConfig, "PTN: triplet-loss embedding and k-NN over the person's references")
def fit_ptn(
    generic: nn.Module, available: ContextSplit, config: PTNConfig, *, seed: int = 0, metric: str = "balanced_accuracy"
) -> PersonalizationResult:
    """Train the embedding with triplets on the labelled available-context windows. ``generic`` is not modified."""
    n_classes = check_available(generic, available)
    embed, dim = embedding_network(generic, torch.as_tensor(available.train.X[:8]))
    model = NearestReferenceClassifier(embed, n_classes, dim, k=config.k, normalize=config.normalize)
    model.set_references(available.train.X, available.train.y)
    initial = state_copy(model)
    out = train(
        model,
        available.train,
        available.val,
        config.train,
        seed=seed,
        metric=metric,
        hooks=[RefreshReferences(available.train)],
        objective=ptn_objective(config),
    )
    model.set_references(available.train.X, available.train.y)  # current even when no validation ran
    return PersonalizationResult(
        "ptn",
        model.eval(),
        states={"generic": state_copy(generic), "initial": initial, "final": state_copy(model)},
        info={"best_epoch": out.best_epoch, "history": out.history, "k": config.k},
    )
