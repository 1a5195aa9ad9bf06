"""Optimizers and learning-rate schedules, built from the spec's ``train`` section.

``catalog`` names them (no torch import, so ``spec`` validates against it);
``optimizers`` and ``schedules`` build torch's classes. Models call these from
``configure_optimizers``; nothing here knows about models or training loops.
"""
