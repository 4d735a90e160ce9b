"""nas-lightning: few-shot neural architecture search with a MAML-trained performance predictor."""
