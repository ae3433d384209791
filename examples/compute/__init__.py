"""Compute jobs: ``shoal job run examples.compute.sum:job`` and friends."""
