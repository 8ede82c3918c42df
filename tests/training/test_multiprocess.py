"""training/train_smart_gan.py under `torchrun --nproc_per_node 2` on the CPU (gloo): both processes end with
the same weights, and only the main process writes checkpoints' models, samples and the export."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import TINY_GAN, save_tiny_score

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs the training script in each process and records, per rank, what it saved and a hash of the parameters
# of every prepared model at the end of training. (BatchNorm running statistics are not compared: DDP
# broadcasts process 0's before every forward pass, then each process updates them with its own batch;
# process 0's are the ones saved.)
LAUNCHER = """
import hashlib, json, os, sys

from accelerate import Accelerator
from diffusers.models.modeling_utils import ModelMixin

from smart_hf import hub
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan

rank = os.environ["RANK"]
saved = []
save_pretrained, export_pipeline = ModelMixin.save_pretrained, hub.export_pipeline
end_training = Accelerator.end_training


def recording_save_pretrained(self, path, *args, **kwargs):
    saved.append(str(path))
    return save_pretrained(self, path, *args, **kwargs)


def recording_export_pipeline(model, path, **kwargs):
    saved.append("export:" + str(path))
    return export_pipeline(model, path, **kwargs)


def hashing_end_training(self):
    hashes = []
    for model in self._models:
        digest = hashlib.sha256()
        for name, parameter in self.unwrap_model(model).named_parameters():
            digest.update(name.encode() + parameter.detach().cpu().contiguous().numpy().tobytes())
        hashes.append(digest.hexdigest())
    with open(os.path.join({record_dir!r}, f"rank{{rank}}.json"), "w") as f:
        json.dump({{"hashes": hashes, "saved": saved, "processes": self.num_processes}}, f)
    end_training(self)


ModelMixin.save_pretrained = recording_save_pretrained
hub.export_pipeline = recording_export_pipeline
Accelerator.end_training = hashing_end_training
train_gan(parse_gan_args(sys.argv[1:]))
"""


def test_two_cpu_processes_train_the_same_weights_and_only_the_main_one_writes(tmp_path):
    score = save_tiny_score(tmp_path / "score")
    records, out = tmp_path / "records", tmp_path / "run"
    records.mkdir()
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER.format(record_dir=str(records)))
    flags = (
        TINY_GAN
        + (
            f"--dataset_name digits --score {score} --output_dir {out} --max_train_steps 4 --use_ema "
            "--checkpointing_steps 2 --save_images_steps 2 --r1_gamma 0.1 --r1_interval 2"
        ).split()
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(launcher), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    main, other = (json.loads((records / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert main["processes"] == other["processes"] == 2
    assert main["hashes"] == other["hashes"] and len(main["hashes"]) == 2  # generator, discriminator
    assert other["saved"] == []
    assert f"export:{out / 'pipeline'}" in main["saved"]
    # The EMA generator goes into the checkpoint, written under its .partial name and then renamed.
    assert str(out / "checkpoint-4.partial" / "generator_ema") in main["saved"]
    assert (out / "checkpoint-4" / "generator_ema" / "config.json").exists()
    # Each process saves its own random states, so a resumed run continues both streams.
    assert {path.name for path in (out / "checkpoint-4").glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }
    assert json.loads((out / "checkpoint-4" / "training_state.json").read_text())["discriminator_step"] == 4
    assert (out / "pipeline" / "model_index.json").exists() and (out / "samples" / "step-000004.png").exists()
