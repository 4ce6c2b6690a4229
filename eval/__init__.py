"""Frozen-encoder evaluation: feature extraction, linear probes, probe tables."""
