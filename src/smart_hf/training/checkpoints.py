"""One checkpoint scheme for both training loops.

A checkpoint is `<output_dir>/checkpoint-<step>/`: accelerate's `save_state` (optimizers, schedulers, random
states of every process, registered objects; the loops' hooks save the models as diffusers folders) plus
`training_state.json`, the loop's own counters. It is written into `checkpoint-<step>.partial/` and renamed
when complete (a checkpoint it replaces is first renamed out of the way, then deleted), so a run killed while
writing never leaves a half checkpoint that `latest` would pick; old checkpoints beyond
`--checkpoints_total_limit` are deleted only after the new one is in place. `checkpoint-best/` (the GAN's best
checkpoint by FD, `--eval_steps`) is written the same way; `latest` and pruning never touch it.
"""

import json
import os
import re
import shutil
from collections.abc import Sequence

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import RNG_STATE_NAME, load

logger = get_logger(__name__, log_level="INFO")

STATE_NAME = "training_state.json"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")
BEST_CHECKPOINT = "checkpoint-best"


def sorted_checkpoints(output_dir: str) -> list[str]:
    """Names of the complete checkpoints in `output_dir`, oldest step first (other folders are ignored)."""
    if not os.path.isdir(output_dir):
        return []
    steps = {
        int(match.group(1)): name
        for name in os.listdir(output_dir)
        if (match := CHECKPOINT_PATTERN.fullmatch(name))
        and os.path.isfile(os.path.join(output_dir, name, STATE_NAME))
    }
    return [steps[step] for step in sorted(steps)]


def incomplete_checkpoints(output_dir: str) -> list[str]:
    """Checkpoint folders a killed run left unfinished (`.partial`, `.old`, or without their training
    state)."""
    if not os.path.isdir(output_dir):
        return []
    complete = set(sorted_checkpoints(output_dir))
    if os.path.isfile(os.path.join(output_dir, BEST_CHECKPOINT, STATE_NAME)):
        complete.add(BEST_CHECKPOINT)
    return sorted(
        name
        for name in os.listdir(output_dir)
        if name.startswith("checkpoint-")
        and name not in complete
        and os.path.isdir(os.path.join(output_dir, name))
    )


def find_checkpoint(output_dir: str, resume_from_checkpoint: str) -> str | None:
    """The checkpoint folder to resume from; `None` when 'latest' finds none (a fresh start)."""
    if resume_from_checkpoint != "latest":
        for path in (resume_from_checkpoint, os.path.join(output_dir, resume_from_checkpoint)):
            if os.path.isdir(path):
                return path
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint folder.")
    checkpoints = sorted_checkpoints(output_dir)
    if skipped := incomplete_checkpoints(output_dir):
        logger.warning(
            f"Skipping incomplete checkpoint folders in {output_dir} (a run was stopped while writing them): "
            f"{', '.join(skipped)}"
        )
    return os.path.join(output_dir, checkpoints[-1]) if checkpoints else None


def prune_checkpoints(output_dir: str, keep: int) -> None:
    """Delete the oldest checkpoints so that `keep` remain."""
    checkpoints = sorted_checkpoints(output_dir)
    for name in checkpoints[: max(0, len(checkpoints) - keep)]:
        logger.info(f"Removing old checkpoint {name}")
        shutil.rmtree(os.path.join(output_dir, name))


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str,
    step: int,
    state: dict,
    total_limit: int | None = None,
    name: str | None = None,
) -> str:
    """Write `checkpoint-<step>/` (or `name`, e.g. `BEST_CHECKPOINT`; call on every process) with `state` as
    training_state.json; keep at most `total_limit` numbered checkpoints. Returns the checkpoint's path."""
    path = os.path.join(output_dir, name or f"checkpoint-{step}")
    partial, old = f"{path}.partial", f"{path}.old"
    if accelerator.is_main_process:
        for leftover in (partial, old):  # left by a run killed while writing
            if os.path.exists(leftover):
                shutil.rmtree(leftover)
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)  # every process writes its own random states
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(partial, STATE_NAME), "w") as f:
            json.dump(state, f, indent=2)
        # Renames are atomic, a deletion is not: the checkpoint replaced is deleted once out of the way.
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(partial, path)
        if os.path.exists(old):
            shutil.rmtree(old)
        if total_limit:
            prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator: Accelerator, path: str) -> dict:
    """Restore everything `save_checkpoint` wrote; returns its training_state.json. Warns when this
    process's random states cannot be restored: the run then continues, but not exactly as it would have."""
    logger.info(f"Resuming from {path}")
    random_states = os.path.join(path, f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl")
    try:
        load(random_states)
    except Exception as error:  # accelerate itself would only log this at INFO level
        logger.warning(
            f"The random states of process {accelerator.process_index} in {path} cannot be read ({error}): "
            "the run resumes, but its random draws will differ from an uninterrupted run's.",
            main_process_only=False,
        )
    accelerator.load_state(path)
    with open(os.path.join(path, STATE_NAME)) as f:
        return json.load(f)


def apply_optimizer_settings(
    name: str,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR | None,
    learning_rate: float,
    betas: Sequence[float],
) -> None:
    """After a resume, the run's learning rate and Adam betas replace the checkpoint's (which accelerate
    restored with the optimizer and schedule), so the non-finite guard's advice to lower them takes effect;
    the schedule's progress is kept."""
    schedule = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper holds the torch schedule
    saved = [
        (group.get("initial_lr", group["lr"]), tuple(group["betas"])) for group in optimizer.param_groups
    ]
    for index, group in enumerate(optimizer.param_groups):
        group["betas"] = tuple(betas)
        group["initial_lr"] = learning_rate
        factor = 1.0 if schedule is None else schedule.lr_lambdas[index](schedule.last_epoch)
        group["lr"] = learning_rate * factor
    if schedule is not None:
        schedule.base_lrs = [learning_rate] * len(optimizer.param_groups)
        schedule._last_lr = [group["lr"] for group in optimizer.param_groups]
    if any(saved_settings != (learning_rate, tuple(betas)) for saved_settings in saved):
        logger.warning(
            f"Resuming with the {name} learning rate {learning_rate} and betas {tuple(betas)} of this run; "
            f"the checkpoint had {saved[0][0]} and {saved[0][1]}."
        )
