"""A toy training run: fit w to 3.0 by gradient descent; a big lr overfits the held-out loss."""

import argparse
import json
import math
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--fail-at", type=int, default=-1)
args = parser.parse_args()
w, target = 0.0, 3.0
with open(os.environ["RESEARCH_METRICS_FILE"], "a", buffering=1) as out:
    for step in range(args.steps):
        if step == args.fail_at:
            raise RuntimeError("loss exploded: the data loader returned garbage")
        w -= args.lr * 2 * (w - target)
        loss = (w - target) ** 2 + 0.05 * math.sin(step) ** 2
        val_loss = (w - target) ** 2 + 0.2 * args.lr + 0.01 * math.cos(step) ** 2
        out.write(json.dumps({"step": step, "loss": loss, "val_loss": val_loss}) + "\n")
        time.sleep(0.01)
print("done", args.lr)
