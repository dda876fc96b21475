"""Architectures of the CRoP paper's datasets that crop ships (Appendix A.1).

``StressMLP`` -- the Stress-sensing model: a multi-layer perceptron of three linear layers with
hidden size 128 over the 34 wrist-band features (Empatica E4), binary output.
"""

from __future__ import annotations

from torch import nn


class StressMLP(nn.Sequential):
    """Input ``(batch, in_features)``; output logits ``(batch, n_classes)``."""

    def __init__(self, in_features: int = 34, n_classes: int = 2, hidden: int = 128) -> None:
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )
        self.config = {"in_features": in_features, "n_classes": n_classes, "hidden": hidden}
