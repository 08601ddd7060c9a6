"""Volumes -> patches -> predictions -> fusion: the patch grid, TTA, the inference run, devices, checkpoints and the one prediction entry point."""
