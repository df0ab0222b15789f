"""Vectorized MJX tasks, wrappers, chunk execution, experts and datasets."""

from envs.registry import expert, make, mode_names, names

__all__ = ["expert", "make", "mode_names", "names"]
