"""One checkpoint scheme for both training loops.

A checkpoint is `<output_dir>/checkpoint-<step>/`: accelerate's `save_state` (optimizers, schedulers, random
states of every process, registered objects; the loops' hooks save the models as diffusers folders) plus
`training_state.json`, the loop's own counters. It is written into `checkpoint-<step>.partial/` and renamed
when complete, so a run killed while writing never leaves a half checkpoint that `latest` would pick; old
checkpoints beyond `--checkpoints_total_limit` are deleted only after the new one is in place.
"""

import json
import os
import re
import shutil

from accelerate import Accelerator
from accelerate.logging import get_logger

logger = get_logger(__name__, log_level="INFO")

STATE_NAME = "training_state.json"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")


def sorted_checkpoints(output_dir: str) -> list[str]:
    """Names of the complete checkpoints in `output_dir`, oldest step first (other folders are ignored)."""
    if not os.path.isdir(output_dir):
        return []
    steps = {
        int(match.group(1)): name
        for name in os.listdir(output_dir)
        if (match := CHECKPOINT_PATTERN.fullmatch(name)) and os.path.isdir(os.path.join(output_dir, name))
    }
    return [steps[step] for step in sorted(steps)]


def find_checkpoint(output_dir: str, resume_from_checkpoint: str) -> str | None:
    """The checkpoint folder to resume from; `None` when 'latest' finds none (a fresh start)."""
    if resume_from_checkpoint != "latest":
        for path in (resume_from_checkpoint, os.path.join(output_dir, resume_from_checkpoint)):
            if os.path.isdir(path):
                return path
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint folder.")
    checkpoints = sorted_checkpoints(output_dir)
    return os.path.join(output_dir, checkpoints[-1]) if checkpoints else None


def prune_checkpoints(output_dir: str, keep: int) -> None:
    """Delete the oldest checkpoints so that `keep` remain."""
    checkpoints = sorted_checkpoints(output_dir)
    for name in checkpoints[: max(0, len(checkpoints) - keep)]:
        logger.info(f"Removing old checkpoint {name}")
        shutil.rmtree(os.path.join(output_dir, name))


def save_checkpoint(
    accelerator: Accelerator, output_dir: str, step: int, state: dict, total_limit: int | None = None
) -> str:
    """Write `checkpoint-<step>/` (call on every process) with `state` as training_state.json; keep at most
    `total_limit` checkpoints. Returns the checkpoint's path."""
    path = os.path.join(output_dir, f"checkpoint-{step}")
    partial = f"{path}.partial"
    if accelerator.is_main_process and os.path.exists(partial):
        shutil.rmtree(partial)  # left by a run killed while writing
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)  # every process writes its own random states
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(partial, STATE_NAME), "w") as f:
            json.dump(state, f, indent=2)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(partial, path)
        if total_limit:
            prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator: Accelerator, path: str) -> dict:
    """Restore everything `save_checkpoint` wrote; returns its training_state.json."""
    logger.info(f"Resuming from {path}")
    accelerator.load_state(path)
    with open(os.path.join(path, STATE_NAME)) as f:
        return json.load(f)
