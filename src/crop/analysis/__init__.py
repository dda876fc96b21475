"""Why CRoP works: the analyses of Section 7 and the hyperparameter search of Appendix A.3.

Pure functions (each checked in ``tests/analysis`` against an independent computation):

* :func:`gip`, :func:`gradient_alignment`, :func:`gip_table`: gradient inner product of the
  available and unseen contexts per model state, and over the pruned positions (Table 4);
* :func:`euclidean_distance`, :func:`distance_matrix`, :func:`layer_distances`: distances
  between states, per layer with the pruning amount (Tables 6 and 15);
* :func:`state_accuracies`, :func:`step_effects`: accuracy of every state on every context and
  what each step changed (Table 5);
* :func:`embeddings`, :func:`tsne_2d`: the input of the decision layer and its t-SNE (Figure 5).

Entry points (the ``crop analyze`` / ``crop tune`` commands call these):

* :func:`analyze_result` writes every table (Markdown + CSV) and figure (PNG) of one
  personalization result into a directory, with an ``index.md`` showing them together;
* :func:`tune` grid-searches any registered method's config on the available context only;
* :func:`population_tune` chooses it by personalizing other people (the generic model's own
  validation users) on one real session and scoring on their other session.
"""

from crop.analysis._distances import distance_matrix, euclidean_distance, layer_distances
from crop.analysis._embed import embeddings, last_linear_name, tsne_2d
from crop.analysis._gip import Alignment, gip, gip_table, gradient_alignment, removed_positions, state_gradients
from crop.analysis._plots import (
    plot_gip,
    plot_prune_curve,
    plot_state_deltas,
    plot_tsne,
    plot_user_lines,
    plot_user_means,
    plot_weight_heatmaps,
)
from crop.analysis._population import PopulationTrial, PopulationTuneResult, population_tune, population_users
from crop.analysis._report import AnalysisReport, analyze_result, available_data
from crop.analysis._states import state_accuracies, step_effects
from crop.analysis._tune import (
    TABLE10_RANGES,
    Trial,
    TuneResult,
    apply_overrides,
    default_grid,
    expand_grid,
    parse_grid_option,
    tune,
)
from crop.report.table import Table

__all__ = [
    "TABLE10_RANGES",
    "Alignment",
    "AnalysisReport",
    "PopulationTrial",
    "PopulationTuneResult",
    "Table",
    "Trial",
    "TuneResult",
    "analyze_result",
    "apply_overrides",
    "available_data",
    "default_grid",
    "distance_matrix",
    "embeddings",
    "euclidean_distance",
    "expand_grid",
    "gip",
    "gip_table",
    "gradient_alignment",
    "last_linear_name",
    "layer_distances",
    "parse_grid_option",
    "plot_gip",
    "population_tune",
    "population_users",
    "plot_prune_curve",
    "plot_state_deltas",
    "plot_tsne",
    "plot_user_lines",
    "plot_user_means",
    "plot_weight_heatmaps",
    "removed_positions",
    "state_accuracies",
    "state_gradients",
    "step_effects",
    "tsne_2d",
    "tune",
]
