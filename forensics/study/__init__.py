"""The study: its configuration, the run over the lens registry, the summary, verdicts, kinds, validation."""
