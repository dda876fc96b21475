"""Algorithm 1 line 4: the Mixed Model.

Positions removed by ToleratedPrune take the generic model's values; every other entry
(kept weights, biases, normalisation parameters and buffers, the excluded last layer) keeps
the personalized value. Mixing is replacement, never addition.
"""

from __future__ import annotations

import torch

from crop.models.utils import State
from crop.personalization.prune import Masks


def mix(pruned: State, generic: State, masks: Masks) -> State:
    """Return a new state: ``generic`` where ``masks`` is False, ``pruned`` elsewhere."""
    out = {k: v.clone() for k, v in pruned.items()}
    for name, keep in masks.items():
        out[name] = torch.where(keep, pruned[name], generic[name])
    return out
