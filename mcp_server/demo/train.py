"""Fit y = 3x - 1 with SGD on noisy synthetic data; a stand-in for a training script.

It logs the way real scripts do: a ``loss=`` line on stdout every few steps, and one JSON
object per step to ``$RESEARCH_METRICS_FILE`` when research-mcp provides it. Pure Python,
so it runs anywhere the package installs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-time", type=float, default=0.01, help="seconds to sleep per step")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    data = [(x, 3.0 * x - 1.0 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(256))]
    w, b = 0.0, 0.0
    metrics_path = os.environ.get("RESEARCH_METRICS_FILE")
    metrics = open(metrics_path, "a", buffering=1) if metrics_path else None  # noqa: SIM115
    print(f"training: steps={args.steps} lr={args.lr} seed={args.seed}", flush=True)
    loss = float("nan")
    for step in range(1, args.steps + 1):
        batch = rng.sample(data, 32)
        grad_w = grad_b = loss = 0.0
        for x, y in batch:
            err = w * x + b - y
            loss += err * err / len(batch)
            grad_w += 2 * err * x / len(batch)
            grad_b += 2 * err / len(batch)
        w -= args.lr * grad_w
        b -= args.lr * grad_b
        if metrics:
            metrics.write(
                json.dumps({"step": step, "loss": round(loss, 6), "w": round(w, 4), "b": round(b, 4)}) + "\n"
            )
        if step % 20 == 0 or step == args.steps:
            print(f"step {step}/{args.steps} loss={loss:.5f} w={w:.3f} b={b:.3f}", flush=True)
        time.sleep(args.step_time)
    print(f"done: final loss={loss:.5f}", flush=True)
    if metrics:
        metrics.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
