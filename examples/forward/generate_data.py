"""Deterministic data for the forward example: rides (the feature source) and labels.

    python examples/forward/generate_data.py [--riders 300] [--days 120] [--out DIR]

Riders have an age, a tier and a hidden "loyalty"; loyal riders ride more often, pay more,
and are more likely to order again — so the features carry signal the model can learn.
Labels are taken at random times per rider, after some history (and a few before any).
The same arguments always write the same bytes (seeded generator, fixed start date).
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2026, 1, 1, tzinfo=UTC)


def generate(riders: int, days: int, out: Path, seed: int = 7) -> tuple[int, int]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rides, labels = [], []
    ride_id = 0
    for r in range(riders):
        rider = f"r{r}"
        age = rng.randint(18, 70)
        loyalty = rng.random()
        tier = "premium" if rng.random() < 0.2 + 0.3 * loyalty else "standard"
        moment = START + timedelta(hours=rng.randint(0, 72))
        end = START + timedelta(days=days)
        while True:
            moment += timedelta(hours=rng.expovariate(1 / (24 * (6 - 5 * loyalty))))
            if moment >= end:
                break
            ride_id += 1
            fare = round(rng.uniform(5, 25) * (1 + loyalty), 2)
            rides.append(
                [f"ride{ride_id}", rider, moment.strftime("%Y-%m-%dT%H:%M:%SZ"), age, fare, tier]
            )
        for _ in range(3):
            label_time = START + timedelta(days=rng.uniform(1, days))
            ordered = 1 if rng.random() < 0.15 + 0.75 * loyalty else 0
            labels.append([rider, label_time.strftime("%Y-%m-%dT%H:%M:%SZ"), ordered])
    rides.sort(key=lambda row: (row[2], row[0]))
    labels.sort(key=lambda row: (row[1], row[0]))
    with (out / "rides.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ride_id", "rider_id", "event_time", "age", "fare", "tier"])
        writer.writerows(rides)
    with (out / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["rider_id", "label_time", "ordered_again"])
        writer.writerows(labels)
    return len(rides), len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--riders", type=int, default=300)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    rides, labels = generate(args.riders, args.days, args.out)
    print(f"wrote {rides} rides and {labels} labels to {args.out}")


if __name__ == "__main__":
    main()
