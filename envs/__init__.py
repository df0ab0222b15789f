"""Vectorized MJX tasks, wrappers, chunk execution, experts and datasets."""

from envs.registry import expert, make, names

__all__ = ["expert", "make", "names"]
