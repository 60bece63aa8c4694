"""Per-subclass evaluation: the paper's protocol of seen and unseen subclasses."""

from .per_subclass import SubclassScores, per_subclass_table, format_table

__all__ = ["SubclassScores", "format_table", "per_subclass_table"]
