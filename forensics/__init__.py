"""unlearning-forensics: did an unlearning method erase facts from a model's weights, or hide them?"""

__version__ = "0.1.0"
