"""Figures that show why AdaptedMoE decided: routing, test-time adaptation, per-expert anomaly maps.

Compute helpers (numbers, testable) are separate from the plotting functions, which return
matplotlib ``Figure`` objects drawn by Agg and never registered with pyplot (nothing is shown;
save them with ``figure.savefig`` or display them in a notebook).

    python -m anomalib_adapted_moe.viz.make_figures --output docs/   # the README figures
"""

from .maps import model_map, per_expert_maps, plot_anomaly_overlay, plot_per_expert_maps
from .routing import (
    plot_routing_embeddings,
    plot_routing_matrix,
    routing_embeddings,
    routing_matrix,
    routing_probabilities,
)
from .tta import gaussian_distance, mean_distances, plot_tta_shift, tta_shift

__all__ = [
    "gaussian_distance",
    "mean_distances",
    "model_map",
    "per_expert_maps",
    "plot_anomaly_overlay",
    "plot_per_expert_maps",
    "plot_routing_embeddings",
    "plot_routing_matrix",
    "plot_tta_shift",
    "routing_embeddings",
    "routing_matrix",
    "routing_probabilities",
    "tta_shift",
]
