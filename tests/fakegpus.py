"""A fake NVML inventory (the only GPU fake allowed) and a PATH without Slurm's commands.

The inventory is a JSON file named by RESEARCH_MCP_FAKE_NVML, so every process of a test
— servers, launch scripts' waiters, other creators — sees the same GPUs. GPU 1 carries a
real foreign process (a ``sleep`` in its own session, not a run of ours).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

SLURM_COMMANDS = frozenset(
    {
        "sinfo", "scontrol", "sbatch", "squeue", "srun", "scancel", "sacct", "salloc", "sacctmgr", "sstat",
        "sprio", "sshare", "sdiag", "strigger", "sview", "smap", "sattach", "sbcast", "scrontab", "sreport",
    }
)  # fmt: skip


class FakeGpus:
    def __init__(self, path: Path, count: int = 4) -> None:
        self.path = path
        self.foreign = subprocess.Popen(["sleep", "600"], start_new_session=True)
        self.gpus: list[dict[str, Any]] = [
            {"uuid": f"GPU-fake-{i:04d}", "name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81920}
            for i in range(count)
        ]
        if count > 1:
            self.gpus[1].update(
                memory_used_mib=5000,
                utilization_pct=97,
                processes=[{"pid": self.foreign.pid, "used_memory_mib": 5000, "kind": "compute"}],
            )
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"gpus": self.gpus}))
        os.replace(tmp, self.path)

    def close(self) -> None:
        self.foreign.kill()
        self.foreign.wait()


def path_without(bin_dir: Path, *missing: str) -> str:
    """A PATH holding every command of the current PATH except ``missing`` (a machine without them)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            target = os.path.join(entry, name)
            link = bin_dir / name
            if name in missing or link.exists() or not os.access(target, os.X_OK):
                continue
            if os.path.isfile(target):
                link.symlink_to(target)
    return str(bin_dir)


def path_without_slurm(bin_dir: Path) -> str:
    """A PATH without Slurm's commands (a machine without Slurm)."""
    return path_without(bin_dir, *SLURM_COMMANDS)
