"""training/train_smart_gan.py under `torchrun --nproc_per_node 2` on the CPU (gloo): both processes end with
the same weights, and only the main process writes checkpoints' models, samples and the export."""

import json
import subprocess

from tests.helpers import TINY_GAN, save_tiny_score
from tests.training.launcher import ENV, read_records, torchrun, write_launcher


def test_two_cpu_processes_train_the_same_weights_and_only_the_main_one_writes(tmp_path):
    score = save_tiny_score(tmp_path / "score")
    launcher, records = write_launcher(tmp_path)
    out = tmp_path / "run"
    flags = (
        TINY_GAN
        + (
            f"--dataset_name digits --score {score} --output_dir {out} --max_train_steps 4 --use_ema "
            "--checkpointing_steps 2 --save_images_steps 2 --r1_gamma 0.1 --r1_interval 2"
        ).split()
    )
    command = torchrun(launcher, ["--standalone", "--nproc_per_node", "2"], flags)  # a free port
    completed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    main, other = read_records(records, 2)
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
