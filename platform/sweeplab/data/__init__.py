"""Data: built-in datasets (``catalog``), their loaders, and the Lightning DataModule."""
