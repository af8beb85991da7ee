"""Facts: the fact model and its sets, fact files, and how a fact becomes text."""
