"""The paper's hyperparameters per dataset (Appendix A.3), as named presets.

* :data:`GENERIC` -- Table 9, generic-model training with a cyclic learning rate (CyclicLR
  between ``base_lr`` and ``max_lr``) for ``epochs`` epochs.
* :data:`PERSONALIZATION` -- Table 10 (fixed learning rate, alpha, tau, initial and final
  epochs) and the text of A.3 (ToleratedPrune's ``k`` and ``k'``: 0.05 and 0.05, except
  0.05 and 0.01 for Stress sensing).

``crop bench --dataset NAME`` selects them automatically; a ``--config`` TOML overrides any
value (``[crop]``, ``[finetune]``, ``[generic-training]``). How they become method configs:
:mod:`crop.bench.datasets`.

Beside the paper's presets (``--preset paper``, the default) stand CPU-practical ones
(``--preset cpu``, :data:`CPU_GENERIC`, :data:`CPU_PERSONALIZATION`): the same architectures,
alpha, tau, k and k', with a larger learning rate and far fewer epochs, so that a generic model
and a personalization take seconds to minutes on a few CPU cores instead of the paper's tens of
minutes to hours. They are crop's choice, not the paper's: results under them are not Table 3's.
:data:`PAPER_COST` is what ``crop bench`` / ``crop personalize`` say up front about a paper
preset's cost (docs/DATASETS.md has the measured times).
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


PRESETS = ("paper", "cpu")

CPU_GENERIC: dict[str, PaperGenericConfig] = {
    name: PaperGenericConfig(epochs=20, base_lr=1e-4, max_lr=1e-3, half_cycle_epochs=5) for name in GENERIC
}

CPU_PERSONALIZATION: dict[str, PersonalizationPreset] = {
    name: PersonalizationPreset(
        lr=1e-4, alpha=p.alpha, tau=p.tau, initial_epochs=20, final_epochs=20, k=p.k, k_step=p.k_step
    )
    for name, p in PERSONALIZATION.items()
}

# What a paper preset costs, said before a run starts (figures: docs/DATASETS.md).
PAPER_COST: dict[str, str] = {
    "extrasensory": "about 14 min per generic model and 14-25 min per method, user and scenario on 2 CPU cores "
    "(real files, issue 23)",
}


def generic_presets(preset: str = "paper") -> dict[str, PaperGenericConfig]:
    """The generic-training presets of ``preset`` (``paper`` or ``cpu``)."""
    check_preset(preset)
    return GENERIC if preset == "paper" else CPU_GENERIC


def personalization_presets(preset: str = "paper") -> dict[str, PersonalizationPreset]:
    """The personalization presets of ``preset`` (``paper`` or ``cpu``)."""
    check_preset(preset)
    return PERSONALIZATION if preset == "paper" else CPU_PERSONALIZATION


def check_preset(preset: str) -> None:
    from crop.errors import CropError

    if preset not in PRESETS:
        raise CropError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")


def cost_note(dataset: str) -> str | None:
    """One line on what the paper's preset of ``dataset`` costs (``None``: the dataset has none)."""
    name = preset_name(dataset)
    if name is None:
        return None
    g, p = GENERIC[name], PERSONALIZATION[name]
    cg, cp = CPU_GENERIC[name], CPU_PERSONALIZATION[name]
    measured = f"; measured {PAPER_COST[name]}" if name in PAPER_COST else ""
    return (
        f"note: the paper's {name} preset trains {g.epochs} epochs per generic model and "
        f"{p.initial_epochs + p.final_epochs} per method, user and scenario (--preset cpu: {cg.epochs} and "
        f"{cp.initial_epochs + cp.final_epochs}){measured}; see crop docs DATASETS"
    )


def preset_name(dataset: str) -> str | None:
    """The preset family of a dataset name (``extrasensory-raw`` uses ``extrasensory``'s)."""
    base = dataset.removesuffix("-raw")
    return base if base in PERSONALIZATION else None
