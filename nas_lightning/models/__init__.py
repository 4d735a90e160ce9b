"""Predictors (plain nn.Modules), the pure MAML functions and the LightningModule."""
