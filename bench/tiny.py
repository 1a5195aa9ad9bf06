"""What ``--tiny`` means for every bench script: the same code paths at a size that runs
in seconds, so CI (``make bench-tiny``) finds a script that no longer runs. The
figures a tiny run prints mean nothing; ``make bench`` measures them."""

from __future__ import annotations

TINY_HELP = "a run of seconds that only checks this script still works (its figures mean nothing)"

# the default sweep (experiments/mlp_digits.yaml) cut down: 2 trials of 2 epochs (its
# space searches train.max_epochs: that entry is removed), as `--set` values
TINY_SETS = ["sweep.trials=2", "search_space.train.max_epochs=null", "train.max_epochs=2"]
TINY_SWEEP = [arg for value in TINY_SETS for arg in ("--set", value)]
