"""The paper's hyperparameters per dataset (Appendix A.3), as named presets.

* :data:`GENERIC` -- Table 9, generic-model training with a cyclic learning rate (CyclicLR
  between ``base_lr`` and ``max_lr``) for ``epochs`` epochs.
* :data:`PERSONALIZATION` -- Table 10 (fixed learning rate, alpha, tau, initial and final
  epochs) and the text of A.3 (ToleratedPrune's ``k`` and ``k'``: 0.05 and 0.05, except
  0.05 and 0.01 for Stress sensing).

``crop bench --dataset NAME`` selects them automatically; a ``--config`` TOML overrides any
value (``[crop]``, ``[finetune]``, ``[generic-training]``). How they become method configs:
:mod:`crop.bench.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PaperGenericConfig:
    """How a generic model of the paper's datasets is trained (Table 9).

    Adam with PyTorch's ``CyclicLR`` (triangular, no momentum cycling) between ``base_lr`` and
    ``max_lr``, ``half_cycle_epochs`` epochs up and as many down (the paper gives the two rates
    and the epochs, not the cycle length or the optimizer: inferred); the epoch with the best
    score on the person-disjoint validation users is kept.

    Attributes:
        epochs: training epochs.
        base_lr, max_lr: the cyclic learning rate's bounds (``base_lr <= max_lr``; equal = fixed).
        batch_size: samples per step.
        half_cycle_epochs: epochs of the rising half of a cycle.
        seed: training seed (also draws the validation users).
    """

    epochs: int = 300
    base_lr: float = 1e-5
    max_lr: float = 1e-5
    batch_size: int = 64
    half_cycle_epochs: int = 10
    seed: int = 0


GENERIC: dict[str, PaperGenericConfig] = {
    "perceptr": PaperGenericConfig(epochs=300, base_lr=1e-5, max_lr=1e-5),
    "widar": PaperGenericConfig(epochs=1000, base_lr=1e-7, max_lr=5e-6),
    "extrasensory": PaperGenericConfig(epochs=150, base_lr=1.2e-8, max_lr=7.5e-7),
    "stress": PaperGenericConfig(epochs=1000, base_lr=5e-5, max_lr=5e-5),
}


@dataclass(frozen=True)
class PersonalizationPreset:
    """Table 10 and A.3 for one dataset: ``lr`` (fixed, both phases), ``alpha``, ``tau``,
    ``initial_epochs``, ``final_epochs``, ``k`` and ``k_step`` (the paper's k')."""

    lr: float
    alpha: float
    tau: float
    initial_epochs: int
    final_epochs: int
    k: float = 0.05
    k_step: float = 0.05


PERSONALIZATION: dict[str, PersonalizationPreset] = {
    "perceptr": PersonalizationPreset(lr=1e-5, alpha=0.01, tau=0.05, initial_epochs=300, final_epochs=300),
    "widar": PersonalizationPreset(lr=1e-6, alpha=1e-4, tau=0.2, initial_epochs=600, final_epochs=600),
    "extrasensory": PersonalizationPreset(lr=1e-6, alpha=0.5, tau=0.01, initial_epochs=600, final_epochs=1000),
    "stress": PersonalizationPreset(lr=1e-5, alpha=1e-4, tau=0.01, initial_epochs=1000, final_epochs=1000, k_step=0.01),
}


def preset_name(dataset: str) -> str | None:
    """The preset family of a dataset name (``extrasensory-raw`` uses ``extrasensory``'s)."""
    base = dataset.removesuffix("-raw")
    return base if base in PERSONALIZATION else None
