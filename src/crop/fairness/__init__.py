"""Fairness of personalization, group-wise and trait-wise (research programme, Aim 3).

Metrics (``fairlearn.metrics.MetricFrame`` underneath): :func:`group_metrics`,
:func:`binary_disparities`, :func:`person_spread`, :func:`harmed_share`. Attributes:
:func:`load_attributes` (a per-person table), :mod:`crop.fairness._traits` (traits the HAPT
recordings carry), :mod:`crop.fairness._carried` (attributes a dataset's files carry, e.g. the
stress readme demographics). The report of a bench directory: :func:`run_fairness` (``crop fairness``).
Mitigation lives in the personalization loop: :mod:`crop.personalization.mitigation`
(re-exported here). See docs/FAIRNESS.md.

>>> from crop.fairness import group_metrics
>>> group_metrics([0, 1, 1, 0], [0, 1, 0, 0], sensitive_features=["a", "a", "b", "b"]).worst["accuracy"]
('b', 0.5)
"""

from crop.fairness._attributes import PersonAttributes, load_attributes
from crop.fairness._command import run_fairness
from crop.fairness._metrics import GroupMetrics, Spread, binary_disparities, group_metrics, harmed_share, person_spread
from crop.fairness._traits import movement_intensity, rank_terciles, walking_cadence
from crop.personalization.mitigation import MitigationConfig, do_no_harm

__all__ = [
    "GroupMetrics",
    "MitigationConfig",
    "PersonAttributes",
    "Spread",
    "binary_disparities",
    "do_no_harm",
    "group_metrics",
    "harmed_share",
    "load_attributes",
    "movement_intensity",
    "person_spread",
    "rank_terciles",
    "run_fairness",
    "walking_cadence",
]
