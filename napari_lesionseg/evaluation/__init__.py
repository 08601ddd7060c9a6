"""Metrics, lesion-wise matching, surface distances, the lesion review and the fusion-mode comparison."""
