"""Write experiments/data/reviews.csv: short film reviews whose label needs word order.

Each review has one or two clauses ("the plot was not good"); a negation flips a
clause's opinion, and in a two-clause review ("... but ...") the last clause decides.
A bag of words sees "good", "awful" and "not" in both orders and cannot tell which
came last: a sequence model can. Seeded: the file is the same on every run.

    python experiments/data/make_reviews.py [--rows 4000] [--out experiments/data/reviews.csv]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

GOOD = ["good", "great", "superb", "lovely", "moving", "clever", "fun", "brilliant"]
BAD = ["bad", "awful", "dull", "boring", "weak", "silly", "poor", "clumsy"]
ASPECTS = ["plot", "acting", "music", "ending", "script", "cast", "pace", "story", "camera work"]
OPENERS = ["", "", "honestly", "overall", "i thought", "to be fair", "in short"]
INTENSIFIERS = ["", "", "", "really", "quite", "very", "rather"]


def clause(rng: random.Random, positive: bool) -> str:
    """A clause whose opinion is ``positive``, said straight or as a negated opposite."""
    negated = rng.random() < 0.4
    word = rng.choice(GOOD if positive != negated else BAD)
    verb = "was not" if negated else "was"
    intensifier = "" if negated else rng.choice(INTENSIFIERS)
    return " ".join(w for w in ("the", rng.choice(ASPECTS), verb, intensifier, word) if w)


def review(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    opener = rng.choice(OPENERS)
    if rng.random() < 0.5:
        text = clause(rng, positive)
    else:  # the first clause says the opposite; the one after "but" decides
        text = f"{clause(rng, not positive)} but {clause(rng, positive)}"
    return (f"{opener} {text}" if opener else text), ("positive" if positive else "negative")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("reviews.csv"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with args.out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "sentiment"])
        writer.writerows(review(rng) for _ in range(args.rows))
    print(f"wrote {args.rows} reviews to {args.out}")


if __name__ == "__main__":
    main()
