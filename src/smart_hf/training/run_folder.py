"""An output folder belongs to one run.

The run is identified by its options, less those that may change on a resume (learning rates and betas, the
length of training, logging and checkpointing); they are recorded in `<output_dir>/run.json`. A new run in a
folder that holds another run's checkpoints or models is refused unless it asks to resume
(--resume_from_checkpoint) or to start afresh (--overwrite_output_dir, which empties the folder); a resume is
refused when the folder's run had other options. So checkpoints, models, metrics and exports in one folder
always come from one run.

A run whose workers torchelastic started again (`torchrun --max_restarts`) is the same run: it resumes from
its latest checkpoint by itself and never empties the folder.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Iterable

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger

logger = get_logger(__name__, log_level="INFO")

RUN_FILE = "run.json"
# Entries a run leaves in its output folder (besides checkpoint-<step>/ and its .partial form). run.json alone
# does not count: a run refused at start-up (bad data, say) leaves only it, and may be started again.
RUN_OUTPUTS = (
    "generator",
    "generator_ema",
    "metrics.json",
    "pipeline",
    "samples",
    "samples.png",
    "unet",
    "score_model",
    "model_index.json",
    "training_history.json",
)


def run_identity(options: dict, changeable: Iterable[str]) -> dict:
    """The options that define a run: all but the `changeable` ones."""
    changeable = set(changeable)
    identity = {key: value for key, value in options.items() if key not in changeable}
    return json.loads(json.dumps(identity, default=str))  # as run.json records it


def run_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def previous_outputs(output_dir: str) -> list[str]:
    """What earlier runs left in `output_dir`."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(
        name for name in os.listdir(output_dir) if name in RUN_OUTPUTS or name.startswith("checkpoint-")
    )


def elastic_restarts(accelerator: Accelerator) -> int:
    """How many times torchelastic has started this run's workers again (TORCHELASTIC_RESTART_COUNT), the
    most over all processes: after a failure on one node only that node's agent counts a restart, although
    the workers of every node start again."""
    count = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    return int(accelerator.gather(torch.tensor([count], device=accelerator.device)).max())


def resume_after_restart(
    accelerator: Accelerator, output_dir: str, resume_from_checkpoint: str | None, overwrite: bool
) -> tuple[str | None, bool]:
    """--resume_from_checkpoint and --overwrite_output_dir as they apply to this start of the run (call on
    every process): after a torchelastic restart, 'latest' unless a checkpoint was named, and no overwrite
    (it would delete the checkpoints the run continues from)."""
    restarts = elastic_restarts(accelerator)
    if not restarts:
        return resume_from_checkpoint, overwrite
    if resume_from_checkpoint is None:
        resume_from_checkpoint = "latest"
        logger.info(f"torchelastic restart {restarts}: resuming from the latest checkpoint in {output_dir}.")
    if overwrite:
        logger.info(f"torchelastic restart {restarts}: --overwrite_output_dir ignored, {output_dir} is kept.")
    return resume_from_checkpoint, False


def claim_output_dir(
    accelerator: Accelerator,
    output_dir: str,
    identity: dict,
    resume: bool,
    overwrite: bool,
) -> None:
    """Make `output_dir` this run's (call on every process, before anything is loaded from or written to it).

    Raises ValueError, naming the remedy, when the folder holds another run, or any run while neither `resume`
    nor `overwrite` is asked for; empties it with `overwrite`."""
    outputs = previous_outputs(output_dir)
    if overwrite:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process and os.path.isdir(output_dir):
            shutil.rmtree(output_dir)
        outputs = []
    recorded = _recorded_identity(output_dir)
    if outputs and not resume:
        described = f"run {run_id(recorded)}" if recorded is not None else "a run"
        raise ValueError(
            f"{output_dir} holds the outputs of {described} ({', '.join(outputs[:5])}"
            f"{', …' if len(outputs) > 5 else ''}). Pass --resume_from_checkpoint latest to continue it, "
            "--overwrite_output_dir to delete them and start anew, or choose another --output_dir."
        )
    if outputs and recorded is not None and recorded != identity:
        changed = sorted(
            key for key in recorded.keys() | identity.keys() if recorded.get(key) != identity.get(key)
        )
        details = ", ".join(f"--{key} {recorded.get(key)!r} → {identity.get(key)!r}" for key in changed[:6])
        raise ValueError(
            f"{output_dir} holds run {run_id(recorded)}, trained with other options ({details}); only "
            "learning rates, betas, the number of steps and logging may change on a resume. Resume with the "
            "run's options, or start anew with --overwrite_output_dir or another --output_dir."
        )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, RUN_FILE), "w") as f:
            json.dump({"run_id": run_id(identity), "options": identity}, f, indent=2)
    accelerator.wait_for_everyone()


def _recorded_identity(output_dir: str) -> dict | None:
    path = os.path.join(output_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)["options"]
