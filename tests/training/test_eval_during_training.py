"""--eval_steps: FD, precision and recall during training, checkpoint-best/, the reference cache; the tracker
flags and the logged peak memory and seconds per step."""

import importlib.util
import json
import resource
import shutil
import subprocess

import pytest
import torch
from accelerate import Accelerator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from smart_hf.data import load_image_dataset
from smart_hf.evaluation import (
    DigitsFeatureExtractor,
    FeatureStatistics,
    compute_features,
    frechet_distance,
    precision_recall,
    runner,
)
from smart_hf.evaluation.during_training import TrainingEvaluator
from smart_hf.evaluation.images import dataset_images, generated_images
from smart_hf.models import DCGANGenerator
from smart_hf.pipelines import SmartOneStepPipeline
from smart_hf.training.checkpoints import (
    BEST_CHECKPOINT,
    find_checkpoint,
    incomplete_checkpoints,
    load_checkpoint,
    save_checkpoint,
    sorted_checkpoints,
)
from smart_hf.training.config import parse_gan_args, parse_score_model_args
from smart_hf.training.gan import best_so_far, train_gan
from tests.helpers import TINY_GAN, save_tiny_score
from tests.training.launcher import ENV, read_records, torchrun, write_launcher

pytestmark = pytest.mark.usefixtures("one_thread")
MEASURED = TrainingEvaluator.evaluate


@pytest.fixture(scope="module")
def score(tmp_path_factory):
    return save_tiny_score(tmp_path_factory.mktemp("score"))


def digits_run(output_dir, score, *flags):
    argv = [*TINY_GAN, "--dataset_name", "digits", "--score", score, "--output_dir", str(output_dir), *flags]
    return train_gan(parse_gan_args(argv))


def scalars(output_dir, project="train_smart_gan"):
    """{tag: [(step, value), ...]} of the run's tensorboard events (of each of its starts)."""
    events = EventAccumulator(str(output_dir / "logs" / project))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def generator_weights(folder):
    return DCGANGenerator.from_pretrained(folder).state_dict()


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def scripted_fds(monkeypatch, values):
    """Make each evaluation report the next of `values` as its FD (precision and recall stay measured)."""
    values = iter(values)

    def scripted(self, generator):
        return {**MEASURED(self, generator), "fd_digits": next(values)}

    monkeypatch.setattr(TrainingEvaluator, "evaluate", scripted)


def test_logged_fd_precision_recall_equal_smart_hf_evaluate_of_the_checkpoint_generator(tmp_path, score):
    """Every --eval_steps (and nowhere else), the EMA generator of that step scores on all 1,797 digits what
    `smart-hf evaluate` gives for the checkpoint's generator_ema with the run's seed and batch size."""
    out = tmp_path / "run"
    flags = (
        "--max_train_steps 4 --eval_steps 2 --checkpointing_steps 2 --use_ema --num_eval_samples 5000 "
        "--train_batch_size 64"
    )
    results = digits_run(out, score, *flags.split(), "--report_to", "tensorboard")
    logged = scalars(out)
    extractor = DigitsFeatureExtractor()
    real = compute_features(extractor, dataset_images(load_image_dataset("digits"), 64))
    for step in (2, 4):
        generator = DCGANGenerator.from_pretrained(out / f"checkpoint-{step}" / "generator_ema")
        images = generated_images(SmartOneStepPipeline(gan=generator), 1797, batch_size=64, seed=0)
        fake = compute_features(extractor, images)
        fd = frechet_distance(FeatureStatistics.from_features(fake), FeatureStatistics.from_features(real))
        pr = precision_recall(real, fake)
        assert dict(logged["fd_digits"])[step] == pytest.approx(fd, rel=1e-5)
        assert dict(logged["precision"])[step] == pytest.approx(pr["precision"], abs=1e-6)
        assert dict(logged["recall"])[step] == pytest.approx(pr["recall"], abs=1e-6)
    assert [step for step, _ in logged["fd_digits"]] == [2, 4]
    fds = dict(logged["fd_digits"])
    best_step = min(fds, key=fds.get)
    assert results["evaluation"]["best_during_training"]["step"] == best_step
    assert results["evaluation"]["best_during_training"]["fd_digits"] == pytest.approx(
        fds[best_step], rel=1e-6
    )
    assert (
        results["evaluation"]["best_during_training"]["num_samples"],
        results["evaluation"]["best_during_training"]["feature_extractor"],
    ) == (
        1797,
        "digits_classifier",
    )


def test_checkpoint_best_holds_the_generator_of_the_lowest_logged_fd(tmp_path, score, monkeypatch):
    out = tmp_path / "run"
    scripted_fds(monkeypatch, [3.0, 1.0, 2.0])
    flags = "--max_train_steps 6 --eval_steps 2 --checkpointing_steps 2 --num_eval_samples 100"
    results = digits_run(out, score, *flags.split(), "--report_to", "tensorboard")

    logged = scalars(out)
    assert logged["fd_digits"] == [(2, 3.0), (4, 1.0), (6, 2.0)]
    assert logged["best_fd_digits"] == [(2, 3.0), (4, 1.0), (6, 1.0)]
    best = generator_weights(out / BEST_CHECKPOINT / "generator")
    assert same_weights(best, generator_weights(out / "checkpoint-4" / "generator"))
    assert not same_weights(best, generator_weights(out / "checkpoint-6" / "generator"))
    state = json.loads((out / BEST_CHECKPOINT / "training_state.json").read_text())
    assert state["global_step"] == 4 and state["best_eval"]["fd_digits"] == 1.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        (
            metrics["evaluation"]["best_during_training"]["step"],
            metrics["evaluation"]["best_during_training"]["fd_digits"],
        )
        == (4, 1.0)
        == (
            results["evaluation"]["best_during_training"]["step"],
            results["evaluation"]["best_during_training"]["fd_digits"],
        )
    )
    card = (out / "pipeline" / "README.md").read_text()
    assert "Best during training" in card and "FD_digits 1, precision" in card and "at step 4" in card
    smart_hf_json = json.loads((out / "pipeline" / "smart_hf.json").read_text())
    assert smart_hf_json["evaluation"]["best_during_training"]["step"] == 4
    # `latest` and pruning ignore checkpoint-best.
    assert find_checkpoint(str(out), "latest") == str(out / "checkpoint-6")
    assert BEST_CHECKPOINT not in sorted_checkpoints(str(out)) + incomplete_checkpoints(str(out))


def test_resume_keeps_the_best_fd_and_ignores_a_partial_best(tmp_path, score, monkeypatch):
    """The resumed run knows the best FD so far (1.0 at step 4): its worse 1.5 at step 6 does not replace
    checkpoint-best, its 0.5 at step 8 does. A checkpoint-best.partial a killed run left is not resumed from,
    and is cleared by the next write. A resume that measures otherwise starts a new best."""
    out = tmp_path / "run"
    flags = "--eval_steps 2 --checkpointing_steps 2 --num_eval_samples 100 --report_to tensorboard".split()
    scripted_fds(monkeypatch, [3.0, 1.0])
    digits_run(out, score, "--max_train_steps", "4", *flags)
    partial = out / f"{BEST_CHECKPOINT}.partial"
    shutil.copytree(out / "checkpoint-2", partial)  # complete-looking, with a training_state.json

    scripted_fds(monkeypatch, [1.5, 0.5])
    results = digits_run(out, score, "--max_train_steps", "8", "--resume_from_checkpoint", "latest", *flags)
    logged = scalars(out)
    assert dict(logged["best_fd_digits"])[6] == 1.0 and dict(logged["best_fd_digits"])[8] == 0.5
    assert (
        results["evaluation"]["best_during_training"]["step"],
        results["evaluation"]["best_during_training"]["fd_digits"],
    ) == (8, 0.5)
    best = generator_weights(out / BEST_CHECKPOINT / "generator")
    assert same_weights(best, generator_weights(out / "checkpoint-8" / "generator"))
    assert json.loads((out / "checkpoint-6" / "training_state.json").read_text())["best_eval"]["step"] == 4
    assert not partial.exists()

    # Measured otherwise (another sample count), FDs are not comparable: the next evaluation is the best.
    scripted_fds(monkeypatch, [9.0])
    resumed = [*flags, "--num_eval_samples", "150", "--resume_from_checkpoint", "latest"]
    results = digits_run(out, score, "--max_train_steps", "10", *resumed)
    assert (
        results["evaluation"]["best_during_training"]["step"],
        results["evaluation"]["best_during_training"]["num_samples"],
    ) == (10, 150)


def test_a_resumed_run_knows_a_best_checkpoint_written_after_its_checkpoint(tmp_path):
    """checkpoint-best/ is written before the step's checkpoint: killed in between, the run resumes from an
    older checkpoint whose best is worse, and takes checkpoint-best's own (if measured alike)."""
    measured = {"metric": "fd_digits", "feature_extractor": "digits_classifier", "num_samples": 100}
    resumed = {**measured, "step": 4, "fd_digits": 1.0}
    written = {**measured, "step": 6, "fd_digits": 0.5}
    (tmp_path / BEST_CHECKPOINT).mkdir()
    (tmp_path / BEST_CHECKPOINT / "training_state.json").write_text(json.dumps({"best_eval": written}))
    assert best_so_far(resumed, str(tmp_path), measured) == written
    assert best_so_far(None, str(tmp_path), measured) == written
    assert best_so_far(resumed, str(tmp_path), {**measured, "num_samples": 200}) is None


def test_a_best_checkpoint_write_killed_midway_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    with torch.no_grad():
        model.weight.fill_(1.0)
    save_checkpoint(accelerator, str(tmp_path), 4, {"global_step": 4}, name=BEST_CHECKPOINT)
    save_state = accelerator.save_state

    def killed_save_state(path):
        (tmp_path / f"{BEST_CHECKPOINT}.partial").mkdir()
        (tmp_path / f"{BEST_CHECKPOINT}.partial" / "model.safetensors").write_text("half")
        raise KeyboardInterrupt  # the run is killed while writing

    monkeypatch.setattr(accelerator, "save_state", killed_save_state)
    with torch.no_grad():
        model.weight.fill_(2.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, str(tmp_path), 6, {"global_step": 6}, name=BEST_CHECKPOINT)
    (tmp_path / f"{BEST_CHECKPOINT}.old").mkdir()  # as if killed between the two renames of another write
    assert load_checkpoint(accelerator, str(tmp_path / BEST_CHECKPOINT)) == {"global_step": 4}
    assert torch.equal(model.weight, torch.ones(2, 2))
    assert find_checkpoint(str(tmp_path), "latest") is None  # never resumes from a best or a leftover

    monkeypatch.setattr(accelerator, "save_state", save_state)
    with torch.no_grad():
        model.weight.fill_(3.0)
    save_checkpoint(accelerator, str(tmp_path), 8, {"global_step": 8}, name=BEST_CHECKPOINT)
    for step in (10, 12):  # pruning to one numbered checkpoint keeps the best
        save_checkpoint(accelerator, str(tmp_path), step, {"global_step": step}, total_limit=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-12", BEST_CHECKPOINT]
    assert load_checkpoint(accelerator, str(tmp_path / BEST_CHECKPOINT)) == {"global_step": 8}
    assert torch.equal(model.weight, torch.full((2, 2), 3.0))


def test_reference_cache_is_recomputed_for_other_data_or_features_and_refused_when_it_does_not_fit(
    tmp_path, monkeypatch
):
    digits = load_image_dataset("digits")
    cache = tmp_path / "cache"

    def evaluator(dataset, space="digits", **kwargs):
        return TrainingEvaluator(dataset, space, 100, str(cache), batch_size=50, seed=0, **kwargs)

    first = evaluator(digits)
    assert [path.name for path in cache.iterdir()] == [first.cache.split("/")[-1]]
    with monkeypatch.context() as patch:  # the same data and features: read from the cache, not extracted
        patch.setattr(runner, "compute_features", lambda *args: pytest.fail("extracted again"))
        again = evaluator(digits)
    assert again.cache == first.cache and torch.equal(again.real_features, first.real_features)

    other_data = evaluator(digits.subset(500, seed=1))  # other images: another file, other features
    assert other_data.cache != first.cache and not torch.equal(other_data.real_features, first.real_features)

    dinov2 = tmp_path / "dinov2"
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=28
    )
    Dinov2Model(config).save_pretrained(dinov2)
    other_features = evaluator(digits, "dinov2", dinov2_model=str(dinov2))
    assert other_features.cache not in (first.cache, other_data.cache)
    assert other_features.real_features.shape == (100, 8)
    assert len(list(cache.iterdir())) == 3

    shutil.copy(first.cache, other_features.cache)  # a file that does not hold what its name says
    with pytest.raises(ValueError, match="was computed with"):
        evaluator(digits, "dinov2", dinov2_model=str(dinov2))


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            "--train_data_dir {folder} --eval_steps 2 --eval_features digits",
            "measures the embedded 8×8 digits",
        ),
        ("--train_data_dir {folder} --eval_steps 2", "--eval_steps needs a feature space"),
        ("--dataset_name digits --eval_features inception", "only act with --eval_steps"),
        (
            "--dataset_name digits --eval_steps 2 --eval_inception_weights w.pth",
            "only acts with --eval_features",
        ),
        ("--dataset_name grid25 --eval_steps 2", "toy 2-D set"),
    ],
)
def test_evaluation_settings_that_do_not_fit_are_refused(tmp_path, flags, message):
    config = parse_gan_args([*flags.format(folder=tmp_path).split(), "--score", "s"])
    with pytest.raises(ValueError, match=message):
        config.check()


@pytest.mark.skipif(importlib.util.find_spec("pytorch_fid") is not None, reason="pytorch-fid is installed")
def test_inception_features_without_pytorch_fid_stop_the_run_before_training(tmp_path, score):
    out = tmp_path / "run"
    with pytest.raises(ImportError, match="pip install pytorch-fid"):
        digits_run(out, score, "--eval_steps", "2", "--eval_features", "inception")
    assert not list(out.glob("checkpoint-*")) and not (out / "generator").exists()


def test_digits_features_refuse_images_that_are_not_8x8_grayscale(tmp_path, score):
    rgb = load_image_dataset("digits", resolution=8, channels=3)
    with pytest.raises(ValueError, match="Digits features measure 8×8 grayscale digits"):
        TrainingEvaluator(rgb, "digits", 100, None, batch_size=50, seed=0)


def test_an_uninstalled_tracker_is_refused_at_start_naming_its_package(tmp_path, score, monkeypatch):
    monkeypatch.setattr("accelerate.utils.is_wandb_available", lambda: False)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="pip install wandb"):
        digits_run(out, score, "--report_to", "wandb")
    assert not out.exists()  # refused before anything was written
    score_model_config = parse_score_model_args(["--report_to", "wandb"])
    with pytest.raises(ValueError, match="pip install wandb"):
        score_model_config.check()
    assert (
        parse_score_model_args(["--report_to", "all", "--tracker_project_name", "p"]).tracker_project_name
        == "p"
    )


def test_throughput_and_peak_memory_are_logged_under_the_tracker_project(tmp_path, score):
    """seconds_per_step is 1 / steps_per_second; on the CPU the peak memory is the process's peak RSS."""
    out = tmp_path / "run"
    digits_run(
        out,
        score,
        "--max_train_steps",
        "4",
        "--logging_steps",
        "2",
        "--report_to",
        "all",
        "--tracker_project_name",
        "my_project",
    )
    logged = scalars(out, "my_project")
    assert [step for step, _ in logged["seconds_per_step"]] == [2, 4]
    assert [value for _, value in logged["seconds_per_step"]] == pytest.approx(
        [1 / value for _, value in logged["steps_per_second"]], rel=1e-5
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert all(100 < value <= peak_mib for _, value in logged["peak_memory_rss_mib"])
    assert "peak_memory_cuda_allocated_mib" not in logged


def test_two_processes_stay_in_step_while_the_main_one_evaluates(tmp_path, score):
    launcher, records = write_launcher(tmp_path)
    out = tmp_path / "run"
    flags = [
        *TINY_GAN,
        *f"--dataset_name digits --score {score} --output_dir {out} --max_train_steps 2 "
        "--eval_steps 2 --num_eval_samples 100".split(),
    ]
    completed = subprocess.run(
        torchrun(launcher, ["--standalone", "--nproc_per_node", "2"], flags),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    main, other = read_records(records, 2)
    assert main["hashes"] == other["hashes"]
    assert {path.name for path in (out / BEST_CHECKPOINT).glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }
    assert (
        json.loads((out / "metrics.json").read_text())["evaluation"]["best_during_training"]["num_samples"]
        == 100
    )
