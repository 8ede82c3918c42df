"""training/train_smart_gan.py's loop under torchrun, for the tests of several processes and nodes.

The launcher script runs the training in each process and records, per rank, what it saved, a hash of the
parameters of every prepared model at the end of training, and how the process was placed. (BatchNorm running
statistics are not hashed: DDP broadcasts process 0's before every forward pass, then each process updates
them with its own batch; process 0's are the ones saved.) With KILL_RANK_AT_STEP=<rank>:<step> in its
environment, that process SIGKILLs itself when it first logs that step (a restarted one is left alone).
"""

import json
import os
import socket
import sys
from pathlib import Path

LAUNCHER = """
import hashlib, json, os, signal, sys

from accelerate import Accelerator
from diffusers.models.modeling_utils import ModelMixin

from smart_hf import hub
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan

rank = os.environ["RANK"]
saved = []
save_pretrained, export_pipeline = ModelMixin.save_pretrained, hub.export_pipeline
log, end_training = Accelerator.log, Accelerator.end_training


def recording_save_pretrained(self, path, *args, **kwargs):
    saved.append(str(path))
    return save_pretrained(self, path, *args, **kwargs)


def recording_export_pipeline(model, path, **kwargs):
    saved.append("export:" + str(path))
    return export_pipeline(model, path, **kwargs)


def killing_log(self, values, step=None, **kwargs):
    killed = os.path.join({record_dir!r}, "killed")  # once: the restarted process logs this step too
    if os.environ.get("KILL_RANK_AT_STEP") == f"{{rank}}:{{step}}" and not os.path.exists(killed):
        open(killed, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return log(self, values, step=step, **kwargs)


def hashing_end_training(self):
    hashes = []
    for model in self._models:
        digest = hashlib.sha256()
        for name, parameter in self.unwrap_model(model).named_parameters():
            digest.update(name.encode() + parameter.detach().cpu().contiguous().numpy().tobytes())
        hashes.append(digest.hexdigest())
    record = {{
        "hashes": hashes,
        "saved": saved,
        "processes": self.num_processes,
        "process_index": self.process_index,
        "is_main_process": self.is_main_process,
        "node": int(os.environ["GROUP_RANK"]),
        "local_rank": int(os.environ["LOCAL_RANK"]),
    }}
    with open(os.path.join({record_dir!r}, f"rank{{rank}}.json"), "w") as f:
        json.dump(record, f)
    end_training(self)


ModelMixin.save_pretrained = recording_save_pretrained
hub.export_pipeline = recording_export_pipeline
Accelerator.log = killing_log
Accelerator.end_training = hashing_end_training
train_gan(parse_gan_args(sys.argv[1:]))
"""

# One torch thread per process: the CPU is shared.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def write_launcher(folder: Path) -> tuple[Path, Path]:
    """The launcher script in `folder`, and the folder its processes write their records to."""
    records = folder / "records"
    records.mkdir(parents=True)
    launcher = folder / "launcher.py"
    launcher.write_text(LAUNCHER.format(record_dir=str(records)))
    return launcher, records


def torchrun(launcher: Path, torchrun_options: list[str], flags: list[str]) -> list[str]:
    """The command line that runs the launcher under torchrun with the training script's `flags`."""
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_options, str(launcher), *flags]


def read_records(records: Path, world_size: int) -> list[dict]:
    """What each process recorded, by global rank."""
    return [json.loads((records / f"rank{rank}.json").read_text()) for rank in range(world_size)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]
