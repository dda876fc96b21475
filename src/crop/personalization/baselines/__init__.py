"""The paper's five baselines (Section 2.5, 6.3), adapted to *static* personalization.

Every baseline is a registered method (``crop.personalize(model, data, method="packnet")``)
that only ever sees the person's available-context data: the labelled ``available.train``
split and ``available.val`` for checkpoint selection. Unseen-context data never reaches them,
exactly as Section 2.5 prescribes ("we prevent these approaches from using it during training").

======================  ==========================================  ===================
method                  paper                                       supervision
======================  ==========================================  ===================
``shot``                Liang et al., ICML 2020                     none (pseudo-labels)
``packnet``             Mallya & Lazebnik, CVPR 2018                labels
``piggyback``           Mallya, Davis & Lazebnik, ECCV 2018         labels
``cotta``               Wang et al., CVPR 2022                      none (EMA teacher)
``ptn``                 Burns et al., Sensors 2022                  labels (triplets)
======================  ==========================================  ===================

All of them run on the one shared loop :func:`crop.personalization.loop.train` through its hooks.
"""

from crop.personalization.baselines.cotta import CoTTAConfig, augment_windows, fit_cotta
from crop.personalization.baselines.packnet import PackNetConfig, fit_packnet
from crop.personalization.baselines.piggyback import PiggybackConfig, fit_piggyback
from crop.personalization.baselines.ptn import NearestReferenceClassifier, PTNConfig, fit_ptn, triplet_loss
from crop.personalization.baselines.shot import SHOTConfig, fit_shot, shot_pseudo_labels

__all__ = [
    "CoTTAConfig",
    "NearestReferenceClassifier",
    "PTNConfig",
    "PackNetConfig",
    "PiggybackConfig",
    "SHOTConfig",
    "augment_windows",
    "fit_cotta",
    "fit_packnet",
    "fit_piggyback",
    "fit_ptn",
    "fit_shot",
    "shot_pseudo_labels",
    "triplet_loss",
]
