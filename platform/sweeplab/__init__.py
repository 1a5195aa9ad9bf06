"""sweeplab: experiment tracking and hyperparameter optimization for deep learning.

The path of a sweep is the package layout: ``spec`` (load and validate) →
``search`` (a backend runs trials) → ``training`` (one configuration) →
``tracking`` (MLflow) → ``registry`` (register, promote).

Importing ``sweeplab`` is cheap: torch, MLflow, Optuna and Ray are imported by the
modules that need them, never here.
"""

__version__ = "0.1.0"
