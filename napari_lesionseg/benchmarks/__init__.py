"""Workloads behind `lesionseg bench`: timings are reported as numbers and ratios, never asserted."""
