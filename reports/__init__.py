"""Reports: results.json in, HTML out. Never loads a model."""
