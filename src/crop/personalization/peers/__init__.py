"""Robust-finetuning peers: the methods a practitioner would pick instead of CRoP.

Each module registers one method on the shared loop (:mod:`crop.personalization.loop`).

Like the baselines, every peer is adapted to *static* personalization: it trains on the
person's labelled ``available.train`` split, selects (checkpoints, radii) on
``available.val``, and never sees any other data. Each module's docstring says what was
adapted and why.

==============  ==============  ========================================  ===================================
method          module          paper                                     what stays close to the generic model
==============  ==============  ========================================  ===================================
``wise-ft``     ``wise_ft``     Wortsman et al., CVPR 2022                weight interpolation after finetuning
``l2-sp``       ``l2_sp``       Li, Grandvalet & Davoine, ICML 2018       L2 penalty towards the generic weights
``lp-ft``       ``lp_ft``       Kumar et al., ICLR 2022                   head probed first, then a gentle finetune
``surgical``    ``surgical``    Lee et al., ICLR 2023                     only one block trains
``tpgm``        ``tpgm``        Tian et al., CVPR 2023                    per-tensor radii learned on validation
==============  ==============  ========================================  ===================================

Importing this package registers the five methods.
"""

from crop.personalization.peers.l2_sp import L2SPConfig, StartingPointPenalty, fit_l2_sp
from crop.personalization.peers.lp_ft import LPFTConfig, fit_lp_ft
from crop.personalization.peers.surgical import SurgicalConfig, blocks, fit_surgical
from crop.personalization.peers.tpgm import TPGMConfig, TrainableProjection, fit_tpgm
from crop.personalization.peers.wise_ft import WiseFTConfig, fit_wise_ft, interpolate_states

__all__ = [
    "L2SPConfig",
    "LPFTConfig",
    "StartingPointPenalty",
    "SurgicalConfig",
    "TPGMConfig",
    "TrainableProjection",
    "WiseFTConfig",
    "blocks",
    "fit_l2_sp",
    "fit_lp_ft",
    "fit_surgical",
    "fit_tpgm",
    "fit_wise_ft",
    "interpolate_states",
]
