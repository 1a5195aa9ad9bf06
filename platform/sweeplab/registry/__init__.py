"""Registry: log a trial's model in MLflow's format and register it under a name."""
