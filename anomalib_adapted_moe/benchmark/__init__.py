"""Benchmark harness: AdaptedMoE against anomalib's built-in models and the paper's ablations, resumable.

Run ``python -m anomalib_adapted_moe.benchmark --help``.
"""
