"""Batched rasterization in plain PyTorch (forward for the built-in generator; the trainer's renderer builds on it)."""
