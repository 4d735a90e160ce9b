"""nas-lightning: few-shot neural architecture search with a meta-learned performance predictor."""

__version__ = "0.3.0"  # the one place the version is written (pyproject.toml reads it)
