"""nas-lightning: few-shot neural architecture search with a meta-learned performance predictor."""

__version__ = "0.1.0"
