"""Beyond one machine, simulated on this one over CPU/gloo: two torchrun "nodes" (one process each, node
ranks from a c10d rendezvous on localhost) train one model in step; when a worker is killed under `torchrun
--max_restarts 1`, the workers are started again, and the run resumes from its latest checkpoint by itself
and ends with the weights of the uninterrupted run."""

import subprocess

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from smart_hf.training.config import parse_score_model_args
from smart_hf.training.run_folder import resume_after_restart
from smart_hf.training.score_model import train_score_model
from tests.helpers import TINY_GAN, save_tiny_score
from tests.training.launcher import ENV, free_port, read_records, torchrun, write_launcher

EMA_WEIGHTS = "generator_ema/diffusion_pytorch_model.safetensors"


def gan_flags(score: str, output_dir) -> list[str]:
    """Four steps with a checkpoint every two; SMaRt on steps 0 and 2."""
    return (
        TINY_GAN
        + (
            f"--dataset_name digits --score {score} --output_dir {output_dir} --max_train_steps 4 --use_ema "
            "--checkpointing_steps 2"
        ).split()
    )


@pytest.fixture(scope="module")
def score(tmp_path_factory) -> str:
    return save_tiny_score(tmp_path_factory.mktemp("score") / "score")


def two_node_run(folder, score: str, options: tuple[str, ...] = (), env: dict = ENV):
    """Train on two torchrun "nodes" of one process each, started side by side, with a c10d rendezvous on
    localhost; returns the output folder, what each process recorded (by global rank) and both nodes' logs."""
    launcher, records = write_launcher(folder)
    output_dir = folder / "run"
    rendezvous = f"--rdzv_backend c10d --rdzv_endpoint localhost:{free_port()} --rdzv_id nodes".split()
    torchrun_options = ["--nnodes", "2", "--nproc_per_node", "1", *rendezvous, *options]
    command = torchrun(launcher, torchrun_options, gan_flags(score, output_dir))
    logs = [folder / f"node{index}.log" for index in range(2)]
    nodes = [
        subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs
    ]
    try:
        for node, log in zip(nodes, logs, strict=True):
            assert node.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.terminate()  # the torchrun agent stops its worker
                node.wait()
    return output_dir, read_records(records, 2), "".join(log.read_text() for log in logs)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, score):
    return two_node_run(tmp_path_factory.mktemp("two_nodes"), score)


def test_two_nodes_train_one_model_in_step_and_only_the_global_main_process_writes(two_nodes):
    output_dir, (main, other), _ = two_nodes
    # One process per node, each its node's local main process, with node ranks from the rendezvous.
    assert {main["node"], other["node"]} == {0, 1} and main["local_rank"] == other["local_rank"] == 0
    assert [main["process_index"], other["process_index"]] == [0, 1]
    assert main["processes"] == other["processes"] == 2
    assert main["hashes"] == other["hashes"] and len(main["hashes"]) == 2  # generator, discriminator
    assert main["is_main_process"] and not other["is_main_process"]
    assert other["saved"] == []
    assert f"export:{output_dir / 'pipeline'}" in main["saved"]
    assert str(output_dir / "checkpoint-4.partial" / "generator") in main["saved"]
    assert {path.name for path in (output_dir / "checkpoint-4").glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }


def test_a_killed_worker_restarts_and_the_run_resumes_from_its_latest_checkpoint_by_itself(
    tmp_path, score, two_nodes
):
    # Process 1 dies at step 3, after checkpoint-2. Its node's agent counts a restart; the other node's
    # agent may restart its worker for the new rendezvous round without counting one, so the processes
    # must agree that this is a restart. No --resume_from_checkpoint is given.
    # Without TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, torchrun keeps one store for all attempts, and restarted
    # workers may read the dead ones' addresses from it and fail to connect (pytorch/pytorch#135712).
    env = {**ENV, "KILL_RANK_AT_STEP": "1:3", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    output_dir, (main, other), log = two_node_run(tmp_path, score, ("--max_restarts", "1"), env)
    assert "failed (exitcode: -9)" in log  # the first attempt did die
    assert f"torchelastic restart 1: resuming from the latest checkpoint in {output_dir}" in log
    assert f"Resuming from {output_dir / 'checkpoint-2'}" in log

    # The same weights as the uninterrupted run.
    uninterrupted_dir, (uninterrupted, _), _ = two_nodes
    assert main["hashes"] == other["hashes"] == uninterrupted["hashes"]
    ema, uninterrupted_ema = load_file(output_dir / EMA_WEIGHTS), load_file(uninterrupted_dir / EMA_WEIGHTS)
    assert all(torch.equal(ema[name], uninterrupted_ema[name]) for name in uninterrupted_ema)


@pytest.mark.parametrize(
    "restart_count, resume, overwrite, expected",
    [
        (None, None, False, (None, False)),  # a first start: as the user asked
        (None, None, True, (None, True)),
        (None, "latest", False, ("latest", False)),
        ("0", None, False, (None, False)),
        ("1", None, False, ("latest", False)),  # a restart continues the run by itself
        ("2", None, True, ("latest", False)),  # and never empties its folder
        ("1", "checkpoint-3", False, ("checkpoint-3", False)),  # a named checkpoint stays the one
    ],
)
def test_a_torchelastic_restart_resumes_from_latest_unless_a_checkpoint_is_named(
    monkeypatch, restart_count, resume, overwrite, expected
):
    if restart_count is None:
        monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    else:
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", restart_count)
    assert resume_after_restart(Accelerator(), "out", resume, overwrite) == expected


def test_a_restart_counted_on_another_node_only_is_a_restart_on_every_node(monkeypatch):
    # After a failure on one node only that node's agent counts a restart; the workers of the others start
    # again with TORCHELASTIC_RESTART_COUNT unchanged. (The two-node test above meets either case, by timing.)
    class AnotherNodeRestarted:
        device = torch.device("cpu")

        def gather(self, count):  # this process's count, and the other node's
            return torch.cat([count, torch.ones_like(count)])

    Accelerator()  # the state accelerate's logger needs
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert resume_after_restart(AnotherNodeRestarted(), "out", None, True) == ("latest", False)


def test_a_restarted_score_model_run_resumes_from_its_latest_checkpoint(tmp_path, monkeypatch, caplog):
    flags = (
        "--dataset_name grid25 --hidden_dim 8 --num_layers 1 --train_batch_size 16 --checkpointing_steps 3"
    )
    flags = ["--output_dir", str(tmp_path), *flags.split(), "--overwrite_output_dir"]
    train_score_model(parse_score_model_args([*flags, "--max_train_steps", "3"]))
    (tmp_path / "notes.txt").write_text("kept")

    # Started again by torchelastic, with the command line of the first start.
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    with caplog.at_level("INFO"):
        results = train_score_model(parse_score_model_args([*flags, "--max_train_steps", "5"]))
    assert f"Resuming from {tmp_path / 'checkpoint-3'}" in caplog.text
    assert results["global_step"] == 5 and (tmp_path / "notes.txt").read_text() == "kept"
