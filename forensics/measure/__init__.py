"""Measurements the lenses read: linear probes and the logit lens, weight diffs, causal localization."""
