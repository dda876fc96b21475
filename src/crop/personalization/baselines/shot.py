"""SHOT (Liang, Hu & Feng, "Do we really need to access the source data? Source hypothesis
transfer for unsupervised domain adaptation", ICML 2020), adapted to static personalization.

SHOT keeps the source classifier (the "hypothesis") frozen and adapts the feature extractor to
unlabelled target data with

- information maximisation: the mean per-window prediction entropy (confident predictions)
  minus the entropy of the mean prediction (diverse predictions across the data), and
- self-supervised pseudo-labelling: class centroids in feature space are computed from the
  softmax-weighted features (a weighted k-means step), each window is labelled by its nearest
  centroid (cosine distance), centroids are recomputed from those hard labels and the windows
  relabelled; the pseudo-labels are refreshed every epoch and enter a cross-entropy term with
  weight ``cls_par`` (beta).

Here the target domain is the person's available context: SHOT adapts on the windows of
``available.train`` *without their labels* (the objective receives window indices, which it
uses to look up each window's pseudo-label, see :func:`~._common.without_labels`). The features
are the input of the decision layer, captured with a forward pre-hook, so any architecture
works. Adaptations, and why:

- SHOT runs a fixed number of epochs; here the shared loop keeps the epoch with the best
  validation score on the *labelled* ``available.val`` split, like every other method of the
  comparison (a deliberate, documented use of validation labels for checkpoint selection).
- Optimiser: Adam at 1e-3 like the other methods (SHOT: SGD 1e-2 with decay on large images).
- BatchNorm layers train normally (running statistics follow the person's data), as in SHOT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.baselines._common import batched, head_module, split_parameters, without_labels
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class SHOTConfig:
    """Hyperparameters of SHOT (defaults of the paper's digit/Office experiments).

    Attributes:
        cls_par: weight beta of the pseudo-label cross-entropy (0 gives SHOT-IM).
        ent_par: weight of the information-maximisation loss.
        diversity: include the diversity term (entropy of the mean prediction).
        distance: feature distance used for the centroids, ``"cosine"`` (SHOT) or ``"euclidean"``.
        rounds: centroid rounds: the softmax-weighted one, then ``rounds - 1`` hard-label ones.
        epsilon: added inside logarithms and to centroid denominators.
        train: the adaptation phase (best validation epoch kept).
    """

    cls_par: float = 0.3
    ent_par: float = 1.0
    diversity: bool = True
    distance: Literal["cosine", "euclidean"] = "cosine"
    rounds: int = 2
    epsilon: float = 1e-5
    train: TrainConfig = field(default_factory=TrainConfig)


def _distances(features: torch.Tensor, centroids: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return 1.0 - F.normalize(features, dim=1) @ F.normalize(centroids, dim=1).T
    return torch.cdist(features, centroids)


def shot_pseudo_labels(
    features: torch.Tensor, probs: torch.Tensor, *, distance: str = "cosine", rounds: int = 2, epsilon: float = 1e-5
) -> torch.Tensor:
    """SHOT's pseudo-labels for ``features`` ``(n, d)`` given predictions ``probs`` ``(n, K)``.

    Round 1: centroids are the ``probs``-weighted means of the features; every later round uses
    the previous round's hard labels. Each round labels every window by its nearest centroid,
    among the classes that received at least one window in the previous assignment. With cosine
    distance the features get a constant 1 appended, as in SHOT.
    """
    if rounds < 1:
        raise CropError(f"shot: rounds must be >= 1, got {rounds}")
    f = features.reshape(len(features), -1).double()
    if distance == "cosine":
        f = F.normalize(torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], dim=1), dim=1)
    weights = probs.double()
    allowed = torch.ones(probs.shape[1], dtype=torch.bool)
    labels = probs.argmax(1)
    for _ in range(rounds):
        centroids = weights.T @ f / (weights.sum(0)[:, None] + epsilon)
        d = _distances(f, centroids, distance).masked_fill(~allowed, float("inf"))
        labels = d.argmin(1)
        weights = F.one_hot(labels, probs.shape[1]).double()
        allowed = weights.sum(0) > 0
    return labels


class PseudoLabels(Hook):
    """Per-window pseudo-labels of the training windows, recomputed after every epoch."""

    def __init__(self, X: torch.Tensor, config: SHOTConfig) -> None:
        self.X = X
        self.config = config
        self.labels = torch.zeros(len(X), dtype=torch.long)
        self.changes: list[int] = []  # windows relabelled by each refresh after the first
        self._fresh = True

    @torch.no_grad()
    def refresh(self, model: nn.Module) -> None:
        captured: list[torch.Tensor] = []
        handle = head_module(model).register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
        was_training = model.training
        model.eval()
        try:
            logits = batched(model, self.X)
        finally:
            handle.remove()
            model.train(was_training)
        features = torch.cat([c.reshape(len(c), -1) for c in captured])
        new = shot_pseudo_labels(
            features,
            logits.softmax(1),
            distance=self.config.distance,
            rounds=self.config.rounds,
            epsilon=self.config.epsilon,
        )
        if not self._fresh:
            self.changes.append(int((new != self.labels).sum()))
        self.labels, self._fresh = new, False

    def on_epoch_end(self, model: nn.Module, record: dict) -> None:
        self.refresh(model)
        record["pseudo_label_changes"] = self.changes[-1]


def shot_objective(pseudo: PseudoLabels, config: SHOTConfig):
    """The SHOT loss for a batch; the loop's labels are window indices (see ``without_labels``)."""
    eps = config.epsilon

    def objective(model: nn.Module, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        p = logits.softmax(1)
        im = -(p * torch.log(p + eps)).sum(1).mean()
        if config.diversity:
            mean = p.mean(0)
            im = im + (mean * torch.log(mean + eps)).sum()
        loss = config.ent_par * im
        if config.cls_par > 0:
            loss = loss + config.cls_par * F.cross_entropy(logits, pseudo.labels[index])
        return loss

    return objective


@register_method("shot", SHOTConfig, "SHOT: frozen classifier, information maximisation + centroid pseudo-labels")
def fit_shot(
    generic: nn.Module, available: ContextSplit, config: SHOTConfig, *, seed: int = 0, metric: str = "balanced_accuracy"
) -> PersonalizationResult:
    """Adapt the feature extractor on the unlabelled available-context windows. ``generic`` is not modified."""
    check_available(generic, available)
    model = clone_model(generic)
    _, backbone = split_parameters(model)
    if not backbone:
        raise CropError("shot: the model has no parameters besides its decision layer")
    unlabelled = without_labels(available.train)
    pseudo = PseudoLabels(torch.as_tensor(unlabelled.X), config)
    pseudo.refresh(model)  # labels of the generic model for the first epoch
    out = train(
        model,
        unlabelled,
        available.val,
        config.train,
        seed=seed,
        metric=metric,
        hooks=[pseudo],
        objective=shot_objective(pseudo, config),
        trainable=backbone,
    )
    return PersonalizationResult(
        "shot",
        model,
        states={"generic": state_copy(generic), "final": state_copy(model)},
        info={"best_epoch": out.best_epoch, "history": out.history, "pseudo_label_changes": pseudo.changes},
    )
