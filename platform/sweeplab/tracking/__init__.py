"""Tracking: MLflow runs written with ``MlflowClient`` and explicit run ids (no fluent state).

``Tracker`` wraps the client for one experiment; ``BatchedMlflowLogger`` is the
Lightning logger that buffers metric values and writes them with ``log_batch``.
"""
