"""Datasets: `synthetic`, procedural flowers with ground-truth part masks."""

from sr_jax.data import synthetic

__all__ = ["synthetic"]
