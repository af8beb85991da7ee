"""Worlds: the embedded micro worlds and the real-model world, and which facts a model knows."""
