"""Models: LightningModules by architecture, shared blocks, and their name tables.

``catalog`` is light (no torch) so that ``spec`` can validate names against it;
the modules that build networks import torch.
"""
