"""Episodes and the LightningDataModule that samples them from tasks."""
