"""Ops on the training hot path: gradient penalty (WGAN-GP, R1)."""
from .gradient_penalty import gradient_penalty, interpolate, per_sample_norm

__all__ = ["gradient_penalty", "interpolate", "per_sample_norm"]
