"""Train a one-step GAN generator with SMaRt (score matching regularity), under `accelerate launch`.

    accelerate launch training/train_smart_gan.py --config training/configs/digits.yaml --output_dir out/dg
    accelerate launch training/train_smart_gan.py --dataset_name grid25 --score analytic --output_dir out/gr
    torchrun --nproc_per_node 2 training/train_smart_gan.py --config training/configs/digits.yaml

Data: images from the embedded `digits`, a Hub data set or a `save_to_disk` folder (--dataset_name) or an
image folder (--train_data_dir), read by `smart_hf.data.load_image_dataset`; or a toy 2-D mixture (grid25,
ring8, ...: `smart_hf.toy2d.TOY_DATASETS`). The frozen score model (--score) is a diffusers noise predictor,
a folder or a Hub id (default for digits: the shipped `digits-unet`), or for toy data the exact score of the
mixture (`analytic`). It stays out of `accelerator.prepare`: its weights never change, but SMaRt's gradient
flows through it into the generator.

Each step runs --d_steps_per_g_step discriminator steps, then one generator step, with
`smart_hf.losses.GANLoss` (adversarial loss; lazy R1 for D; lazy SMaRt for G). D's inputs can be masked
(--masked_gan, MaskedGAN) and diffused (--diffusion_gan, Diffusion-GAN), D's features modulated by noise
with a consistency loss (--nice, NICE), and the fakes refined along D's gradient (--nats, NATS); separate
Adam settings per network give TTUR (--config training/configs/ttur.yaml). With --fake_score a score model of
G's own samples trains in a third phase after each generator step, for a distribution-matching term in G's
loss (`smart_hf.fake_score`). A class-conditional run passes
the batch's class labels to G, D and the score model. A step whose loss is not finite on some process is not
applied; after --max_nonfinite_steps such steps in a row the run stops, naming the checkpoint to resume from.

Checkpoints (`checkpoint-<step>/`: generator/, discriminator/, generator_ema/, fake_score/,
training_state.json with the step counters and the EMA state, and accelerate's optimizer and random states)
continue with --resume_from_checkpoint latest, as a torchelastic restart (torchrun --max_restarts) does by
itself (`run_folder.resume_after_restart`). With --eval_steps the main process measures FD, precision and
recall during training (`smart_hf.evaluation.during_training`) and keeps the lowest-FD checkpoint as
`checkpoint-best/`. The output folder gets generator/ (and generator_ema/) and metrics.json,
which `smart-hf export` reads; image runs also get samples.png, samples/ (grids during training) and
pipeline/ (a Hub-ready export, uploaded with --push_to_hub); toy runs get a scatter plot. Presets of the
paper's settings: --config training/configs/<name>.yaml (repeatable), overridden by flags on the command line.
"""

import copy
import json
import logging
import os
import time
from dataclasses import asdict, dataclass

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import broadcast, set_seed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from smart_hf import hub
from smart_hf.data import ImageDataset
from smart_hf.evaluation.during_training import TrainingEvaluator
from smart_hf.smart import SmartRegularizer
from smart_hf.toy2d import load_toy_dataset
from smart_hf.training import build, report
from smart_hf.training.batch_norm import freeze_batch_norm, recalibrate_batch_norm
from smart_hf.training.checkpoints import (
    BEST_CHECKPOINT,
    STATE_NAME,
    apply_optimizer_settings,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from smart_hf.training.config import GAN_RESUMABLE_SETTINGS, GANTrainingConfig
from smart_hf.training.options import to_flat
from smart_hf.training.run_folder import claim_output_dir, resume_after_restart, run_identity

logger = get_logger(__name__, log_level="INFO")

MODEL_FOLDERS = ("generator", "discriminator")  # in the order of `accelerator.prepare`
FAKE_SCORE_FOLDER = "fake_score"  # prepared after them with --fake_score
EMA_FOLDER = "generator_ema"


@dataclass
class TrainingProgress:
    """Counters saved with every checkpoint (training_state.json)."""

    global_step: int = 0  # generator steps
    discriminator_step: int = 0  # discriminator steps = batches drawn per process
    nonfinite_steps: int = 0  # steps not applied because a loss was not finite
    train_seconds: float = 0.0
    best_eval: dict | None = None  # --eval_steps: the evaluation of checkpoint-best/ (lowest FD)


def train_gan(config: GANTrainingConfig) -> dict:
    """Train, checkpoint, evaluate and export as `config` says; returns the final metrics (main process)."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    config.check()
    if config.push_to_hub:
        # A missing login or a repository one may not write fails now, not after training. Checked on every
        # process, which all get the same answer (none waits for one that stopped); a bare name gets the
        # user's namespace.
        config.hub_model_id = hub.create_hub_repo(config.hub_model_id, private=config.hub_private_repo)
    accelerator = build.make_accelerator(
        config.output_dir, config.logging_dir, config.mixed_precision, config.logger, data_seed=config.seed
    )
    # The precision accelerate resolved (flag, `accelerate launch` or "no"): recorded with the run's options
    # and compared on resume.
    config.mixed_precision = accelerator.mixed_precision
    if config.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config.resume_from_checkpoint, config.overwrite_output_dir = resume_after_restart(
        accelerator, config.output_dir, config.resume_from_checkpoint, config.overwrite_output_dir
    )
    claim_output_dir(
        accelerator,
        config.output_dir,
        run_identity(to_flat(config), GAN_RESUMABLE_SETTINGS),
        resume=config.resume_from_checkpoint is not None,
        overwrite=config.overwrite_output_dir,
    )
    last_checkpoint = config.resume_from_checkpoint and find_checkpoint(
        config.output_dir, config.resume_from_checkpoint
    )
    if last_checkpoint:
        check_checkpoint_timesteps(config, last_checkpoint)
    set_seed(config.seed, device_specific=True)  # different latents on every process; DDP syncs the weights
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )

    # Data, the frozen score model and the networks; every bad input is refused here, before training.
    toy = load_toy_dataset(config.dataset_name) if config.is_toy else None
    if config.compile_score or config.compile_models:
        build.check_compile()
    score_dtype = build.SCORE_DTYPES.get(config.score_dtype, weight_dtype)  # --score_dtype, else compute's
    score = build.build_score(config, toy, score_dtype).to(accelerator.device)
    if toy is not None:
        dataset, num_classes, sample_shape = None, None, tuple(toy.means.shape[1:])
        batches = build.ToyBatches(toy, config.train_batch_size, config.seed + accelerator.process_index)
        generator, discriminator = build.build_toy_models(config, toy)
    else:
        dataset = build.load_gan_images(config, score.sample_shape, accelerator.is_local_main_process)
        num_classes, sample_shape = dataset.num_classes, dataset.sample_shape
        batches = build.image_batches(
            dataset, config.train_batch_size, config.dataloader_num_workers, seed=config.seed
        )
        generator, discriminator = build.build_image_models(config, sample_shape, num_classes)
        if config.gradient_checkpointing:
            build.enable_gradient_checkpointing(generator, discriminator, score)
        if config.channels_last:
            build.to_channels_last(generator, discriminator, score)
    if config.compile_score:
        score = build.compile_score(score)
    score.check_compatible(sample_shape, num_classes)
    smart = SmartRegularizer.from_config(score, config.smart)  # also checks the t range; lambda 0: plain GAN

    optimizer_g, optimizer_d = build.build_optimizers(config, generator, discriminator)
    if toy is not None:
        generator, discriminator, optimizer_g, optimizer_d = accelerator.prepare(
            generator, discriminator, optimizer_g, optimizer_d
        )
        accelerator.register_for_checkpointing(batches)
    else:
        generator, discriminator, optimizer_g, optimizer_d, batches = accelerator.prepare(
            generator, discriminator, optimizer_g, optimizer_d, batches
        )
    lr_scheduler_g, lr_scheduler_d = accelerator.prepare(
        *(
            build.learning_rate_scheduler(config, optimizer, accelerator.num_processes)
            for optimizer in (optimizer_g, optimizer_d)
        )
    )
    # --fake_score: a score model of G's samples, trained in its own phase with its own optimizer.
    fake_score_model, optimizer_f = build.build_fake_score(config, sample_shape, num_classes)
    if fake_score_model is not None:
        fake_score_model, optimizer_f = accelerator.prepare(fake_score_model, optimizer_f)
    unwrapped_generator = accelerator.unwrap_model(generator)
    ema = build.build_ema(config, unwrapped_generator)
    resolution = None if toy is not None else sample_shape[1]
    gan_loss = build.build_gan_loss(
        config, generator, discriminator, smart, accelerator, resolution, fake_score_model
    )
    flip = build.RandomHorizontalFlip(config.seed + accelerator.process_index) if config.random_flip else None
    if flip is not None:
        accelerator.register_for_checkpointing(flip)  # last, so the other objects keep their checkpoint slots
    register_model_hooks(accelerator, ema, config)

    progress = TrainingProgress()
    if last_checkpoint:
        restore_progress(load_checkpoint(accelerator, last_checkpoint), progress, ema)
        apply_optimizer_settings(
            "generator", optimizer_g, lr_scheduler_g, config.g_learning_rate, config.g_adam_betas
        )
        apply_optimizer_settings(
            "discriminator", optimizer_d, lr_scheduler_d, config.d_learning_rate, config.d_adam_betas
        )
    elif config.resume_from_checkpoint:
        logger.info(f"No checkpoint in {config.output_dir}; starting a new run.")
    if accelerator.is_main_process:
        os.makedirs(config.output_dir, exist_ok=True)
        accelerator.init_trackers(
            config.tracker_project_name,
            config={
                key: value if isinstance(value, int | float | str | bool) else str(value)
                for key, value in to_flat(config).items()
            },
        )

    # --eval_steps: the main process's evaluator, and the best evaluation so far (also checkpoint-best's).
    evaluator = setup_evaluator(accelerator, config, dataset)
    if evaluator is not None:
        progress.best_eval = best_so_far(progress.best_eval, config.output_dir, evaluator.description)
    batch_iterator = (
        iter(batches)
        if toy is not None
        else endless_batches(accelerator, batches, progress.discriminator_step)
    )
    start_step, start_time, previous_seconds = progress.global_step, time.time(), progress.train_seconds
    logger.info(
        f"Training on {config.data_source} from step {start_step} to {config.max_train_steps}, batch "
        f"{config.train_batch_size} per process on {accelerator.num_processes} process(es), "
        f"SMaRt lambda={config.smart.weight}, "
        f"Diffusion-GAN {'on' if config.diffusion_gan.enabled else 'off'}, "
        f"MaskedGAN {config.masked_gan.mode}"
    )
    progress_bar = tqdm(
        total=config.max_train_steps,
        initial=start_step,
        disable=not accelerator.is_local_main_process,
        desc="steps",
    )
    window = report.LogWindow()
    window_start = (start_step, start_time)  # for the throughput logged with each window's means
    # Non-finite steps in a row, per kind of step (the loss terms it computes): a lazy SMaRt or R1 term that
    # overflows on each of its steps is caught although the steps between them are fine.
    nonfinite_in_a_row: dict[frozenset[str], int] = {}
    # What a checkpoint holds, checked to be finite before one is written.
    healthy_models = [model for model in (generator, discriminator, fake_score_model) if model is not None]
    healthy_optimizers = [opt for opt in (optimizer_g, optimizer_d, optimizer_f) if opt is not None]
    freeze_step = config.freeze_batch_norm_step
    if freeze_step is not None and start_step > freeze_step:  # resumed after the freeze
        freeze_batch_norm(unwrapped_generator, config.train_batch_size, config.seed, recalibrate=False)
    while progress.global_step < config.max_train_steps:
        step = progress.global_step
        if step == freeze_step:
            freeze_batch_norm(unwrapped_generator, config.train_batch_size, config.seed, recalibrate=True)

        # Discriminator phase(s), then the generator phase.
        applied = True
        for _ in range(config.d_steps_per_g_step):
            batch = next(batch_iterator)
            real = batch["images"].to(accelerator.device)
            if flip is not None:
                real = flip(real)
            class_labels = batch.get("class_labels")
            latents = torch.randn(len(real), config.latent_dim, device=accelerator.device)
            with accelerator.autocast():
                d_terms = gan_loss.discriminator_phase(
                    real, latents, progress.discriminator_step, class_labels, generator_step=step
                )
            applied &= apply_update(accelerator, optimizer_d, d_terms.total)
            progress.discriminator_step += 1
        discriminator.requires_grad_(False)
        latents = torch.randn(len(real), config.latent_dim, device=accelerator.device)
        # Under autocast as well: the frozen score model is not prepared, so SMaRt's forward through it
        # runs in the compute dtype only here.
        with accelerator.autocast():
            g_terms = gan_loss.generator_phase(latents, step, class_labels)
        g_applied = apply_update(accelerator, optimizer_g, g_terms.total)
        discriminator.requires_grad_(True)
        f_logs = {}
        for _ in range(config.fake_score.updates if optimizer_f is not None else 0):
            latents = torch.randn(len(real), config.latent_dim, device=accelerator.device)
            with accelerator.autocast():
                f_terms = gan_loss.fake_score_phase(latents, class_labels)
            applied &= apply_update(accelerator, optimizer_f, f_terms.total)
            f_logs = f_terms.logs
        if g_applied and ema is not None:
            ema.step(unwrapped_generator.parameters())
        learning_rates = {"lr_g": lr_of(optimizer_g), "lr_d": lr_of(optimizer_d)}  # this step's
        lr_scheduler_g.step()
        lr_scheduler_d.step()

        # Bookkeeping: the non-finite guard, logs, checkpoints, sample grids.
        logs = {**d_terms.logs, **g_terms.logs, **f_logs}
        if config.smart.weight > 0:
            logs["smart_weight"] = smart.weight_at(step)
        progress.global_step += 1
        progress_bar.update(1)
        kind = frozenset(logs)
        if applied and g_applied:
            nonfinite_in_a_row[kind] = 0
        else:
            nonfinite_in_a_row[kind] = count = nonfinite_in_a_row.get(kind, 0) + 1
            progress.nonfinite_steps += 1
            logger.warning(
                f"Step {step}: non-finite loss or gradient, update skipped ({count} in a row): {logs}"
            )
            if count >= config.max_nonfinite_steps:
                raise RuntimeError(nonfinite_message(count, step, logs, last_checkpoint))
        window.add({**logs, "nonfinite_steps": progress.nonfinite_steps})

        global_step = progress.global_step
        if global_step % config.logging_steps == 0 or global_step == config.max_train_steps:
            means = window.pop_means()
            progress_bar.set_postfix({key: f"{value:.3g}" for key, value in means.items()})
            now = time.time()
            steps_per_second = (global_step - window_start[0]) / (now - window_start[1])
            images_per_second = (  # real images drawn, all processes
                steps_per_second
                * config.d_steps_per_g_step
                * config.train_batch_size
                * accelerator.num_processes
            )
            throughput = {
                "steps_per_second": steps_per_second,
                "seconds_per_step": 1 / steps_per_second,
                "images_per_second": images_per_second,
            }
            memory = report.peak_memory(accelerator.device)
            accelerator.log({**means, **learning_rates, **throughput, **memory}, step=global_step)
            window_start = (global_step, now)
        new_best, previous_best = False, progress.best_eval
        if config.eval_steps and (
            global_step % config.eval_steps == 0 or global_step == config.max_train_steps
        ):
            eval_start = time.time()
            new_best = evaluate(accelerator, evaluator, unwrapped_generator, ema, config, progress)
            # Evaluation time is not training time: the throughput of this window leaves it out.
            window_start = (window_start[0], window_start[1] + time.time() - eval_start)
        # A checkpoint is never written during a run of non-finite steps, nor from non-finite weights, so the
        # latest one is a good one.
        checkpoint_due = config.checkpointing_steps and global_step % config.checkpointing_steps == 0
        healthy = (
            (checkpoint_due or new_best)
            and not any(nonfinite_in_a_row.values())
            and all_finite(accelerator, healthy_models, healthy_optimizers, ema)
        )
        if new_best and not healthy:
            progress.best_eval = previous_best  # the best stays the one checkpoint-best/ holds
        if healthy:
            progress.train_seconds = previous_seconds + time.time() - start_time
            state = checkpoint_state(progress, ema)
            # checkpoint-best/ first: a run killed in between resumes knowing it (`best_so_far`).
            if new_best:
                save_checkpoint(accelerator, config.output_dir, global_step, state, name=BEST_CHECKPOINT)
            if checkpoint_due:
                last_checkpoint = save_checkpoint(
                    accelerator, config.output_dir, global_step, state, config.checkpoints_total_limit
                )
        if toy is None and config.save_images_steps and global_step % config.save_images_steps == 0:
            if accelerator.is_main_process:
                averaged = averaged_generator(unwrapped_generator, ema, config)
                report.save_sample_grid(accelerator, config, averaged, global_step)
    progress_bar.close()
    loop_seconds = time.time() - start_time

    accelerator.wait_for_everyone()
    progress.train_seconds = previous_seconds + loop_seconds
    results: dict = {}
    if accelerator.is_main_process:
        unwrapped_generator.save_pretrained(os.path.join(config.output_dir, "generator"))
        final = averaged_generator(unwrapped_generator, ema, config)
        if ema is not None:
            final.save_pretrained(os.path.join(config.output_dir, EMA_FOLDER))
        steps_run = progress.global_step - start_step
        results = {
            "global_step": progress.global_step,
            "train_seconds": progress.train_seconds,
            "seconds_per_step": loop_seconds / steps_run if steps_run else None,
            "nonfinite_steps": progress.nonfinite_steps,
        }
        if progress.best_eval is not None:
            results["best_eval"] = progress.best_eval  # recorded by `report.finish_images`
        if toy is not None:
            results = report.finish_toy(config, final, toy, results)
        else:
            exported_discriminator = accelerator.unwrap_model(discriminator) if config.nats.enabled else None
            results = report.finish_images(config, final, dataset, smart, results, exported_discriminator)
    accelerator.end_training()
    return results


def check_checkpoint_timesteps(config: GANTrainingConfig, checkpoint: str) -> None:
    """The checkpoint's discriminator must have the timestep input this run gives it (t_max + 1 embeddings
    with --diffusion_gan, none without)."""
    with open(os.path.join(checkpoint, "discriminator", "config.json")) as f:
        saved = json.load(f).get("num_timesteps", 0)
    needed = config.diffusion_gan.num_timesteps
    if saved != needed:
        built, wanted = (
            f"for Diffusion-GAN with t_max {n - 1}" if n else "without Diffusion-GAN" for n in (saved, needed)
        )
        raise ValueError(
            f"The discriminator in {checkpoint} was built {built}, but this run needs one {wanted}: resume "
            "with the checkpoint's --diffusion_gan and --diffusion_gan_t_max, or start a new run in another "
            "--output_dir."
        )


def register_model_hooks(accelerator: Accelerator, ema: EMAModel | None, config: GANTrainingConfig) -> None:
    """Checkpoints hold G and D (and the EMA generator, and the fake score model) as diffusers folders, not
    pickles."""
    folders = MODEL_FOLDERS + ((FAKE_SCORE_FOLDER,) if config.fake_score.enabled else ())

    def save_models(models, weights, output_dir):
        if accelerator.is_main_process:
            for folder, model in zip(folders, models, strict=True):
                accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, folder))
            if ema is not None:
                generator = accelerator.unwrap_model(models[0])
                averaged_generator(generator, ema, config).save_pretrained(
                    os.path.join(output_dir, EMA_FOLDER)
                )
        weights.clear()  # saved above as safetensors folders; accelerate need not pickle them again

    def load_models(models, input_dir):
        for folder, model in zip(folders, models, strict=True):
            model = accelerator.unwrap_model(model)
            model.load_state_dict(type(model).from_pretrained(input_dir, subfolder=folder).state_dict())
        if ema is not None:
            if not os.path.isdir(os.path.join(input_dir, EMA_FOLDER)):
                raise ValueError(f"{input_dir} was saved without --use_ema; resume without it.")
            averaged = type(accelerator.unwrap_model(models[0])).from_pretrained(
                input_dir, subfolder=EMA_FOLDER
            )
            ema.shadow_params = [p.detach().clone().to(accelerator.device) for p in averaged.parameters()]
        models.clear()

    accelerator.register_save_state_pre_hook(save_models)
    accelerator.register_load_state_pre_hook(load_models)


def checkpoint_state(progress: TrainingProgress, ema: EMAModel | None) -> dict:
    """training_state.json of a checkpoint: the counters and the EMA's own state (decay, step)."""
    state = asdict(progress)
    if ema is not None:
        state["ema"] = {key: value for key, value in ema.state_dict().items() if key != "shadow_params"}
    return state


def from_main_process(accelerator: Accelerator, values: list[float]) -> list[float]:
    """The main process's `values` on every process (the others wait for it)."""
    return broadcast(torch.tensor(values, dtype=torch.float32, device=accelerator.device)).tolist()


def setup_evaluator(
    accelerator: Accelerator, config: GANTrainingConfig, dataset: ImageDataset | None
) -> TrainingEvaluator | None:
    """The evaluator of --eval_steps on the main process (None on the others, or without --eval_steps): its
    reference features are computed (or read from the cache) now, before training. When that fails on the main
    process, every process stops."""
    if config.eval_steps is None:
        return None
    evaluator, error = None, None
    if accelerator.is_main_process:
        try:
            evaluator = TrainingEvaluator(
                dataset,
                config.eval_feature_space,
                config.num_eval_samples,
                cache_dir=config.output_dir,
                batch_size=config.train_batch_size,
                seed=config.seed,
                device=accelerator.device,
                dinov2_model=config.eval_dinov2_model,
                inception_weights=config.eval_inception_weights,
            )
        except Exception as caught:  # raised below, once every process knows
            error = caught
    if from_main_process(accelerator, [error is not None])[0]:
        raise error or RuntimeError("Setting up --eval_steps failed on the main process; see its error.")
    if evaluator is not None:
        logger.info(
            f"Evaluating every {config.eval_steps} steps: {evaluator.metric}, precision and recall on "
            f"{evaluator.num_samples} samples in the features of {evaluator.extractor.name}."
        )
    return evaluator


def best_so_far(best: dict | None, output_dir: str, description: dict) -> dict | None:
    """The lowest-FD evaluation among the resumed checkpoint's `best` and checkpoint-best's own, if measured
    as `description` says (same metric, feature space and sample count); None when there is none."""
    path = os.path.join(output_dir, BEST_CHECKPOINT, STATE_NAME)
    candidates = [best]
    if os.path.isfile(path):
        with open(path) as f:
            candidates.append(json.load(f).get("best_eval"))
    keys = ("metric", "feature_extractor", "num_samples")
    candidates = [record for record in candidates if record is not None]
    comparable = [record for record in candidates if all(record.get(k) == description[k] for k in keys)]
    if candidates and not comparable:
        measured = ", ".join(f"{key} {candidates[0].get(key)}" for key in keys)
        logger.warning(
            f"The best evaluation so far was measured otherwise ({measured}) than this run's: "
            f"{BEST_CHECKPOINT} will be replaced by this run's first evaluation."
        )
    return min(comparable, key=lambda record: record[record["metric"]], default=None)


def evaluate(
    accelerator: Accelerator,
    evaluator: TrainingEvaluator | None,
    generator: ModelMixin,
    ema: EMAModel | None,
    config: GANTrainingConfig,
    progress: TrainingProgress,
) -> bool:
    """Evaluate the averaged generator on the main process (the others wait), log and print the metrics,
    record a new best in `progress`. True on every process when this evaluation is the best so far (lowest
    FD; a run whose earlier best was measured otherwise starts afresh)."""
    step, is_best, error = progress.global_step, False, None
    if accelerator.is_main_process:
        try:
            start = time.time()
            metrics = evaluator.evaluate(averaged_generator(generator, ema, config))
            metric, best = evaluator.metric, progress.best_eval
            is_best = metric in metrics and (best is None or metrics[metric] < best[metric])
            if is_best:
                progress.best_eval = {"step": step, **metrics, **evaluator.description}
            if progress.best_eval is not None:
                metrics[f"best_{metric}"] = progress.best_eval[metric]
            accelerator.log({**metrics, "eval_seconds": time.time() - start}, step=step)
            shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items())
            logger.info(f"Evaluation at step {step}: {shown or 'nothing measured'}")
        except Exception as caught:  # raised below, once every process knows
            error = caught
    failed, is_best = from_main_process(accelerator, [error is not None, is_best])
    if failed:
        raise error or RuntimeError(
            f"The evaluation at step {step} failed on the main process (see its error)."
        )
    return bool(is_best)


def restore_progress(state: dict, progress: TrainingProgress, ema: EMAModel | None) -> None:
    """The counters and the EMA's own state (decay, step) of a loaded checkpoint."""
    ema_state = state.pop("ema", None)
    if ema is not None:
        ema.load_state_dict({**ema_state, "shadow_params": ema.shadow_params})
    for key, value in state.items():
        setattr(progress, key, value)


def nonfinite_message(count: int, step: int, logs: dict, last_checkpoint: str | None) -> str:
    resume = (
        f"The last good checkpoint is {last_checkpoint}: resume with --resume_from_checkpoint "
        f"{last_checkpoint}"
        if last_checkpoint
        else "No checkpoint was saved (see --checkpointing_steps); start again"
    )
    return (
        f"Stopping: {count} steps in a row (up to step {step}) had a non-finite loss or gradient ({logs}). "
        f"{resume} after lowering the learning rates or lambda (--smart_weight)."
    )


def endless_batches(accelerator: Accelerator, dataloader, start_batch: int):
    """Batches of successive epochs from batch `start_batch` on. With accelerate's seedable sampler, epoch e
    is shuffled by seed + e on every process, so a resumed run sees the batches an uninterrupted run would."""
    epoch, skip = divmod(start_batch, len(dataloader))
    while True:
        dataloader.set_epoch(epoch)
        yield from accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        epoch, skip = epoch + 1, 0


def averaged_generator(generator: ModelMixin, ema: EMAModel | None, config: GANTrainingConfig) -> ModelMixin:
    """An eval-mode copy of `generator` holding the EMA weights when there is an EMA.

    `EMAModel` averages parameters only, so the BatchNorm statistics the live generator gathered do not fit
    the averaged weights (on grid25 they cost most of the high-quality samples): the copy gets its own,
    recomputed by `recalibrate_batch_norm`.
    """
    averaged = copy.deepcopy(generator).requires_grad_(False)
    if ema is not None:
        ema.copy_to(averaged.parameters())
        recalibrate_batch_norm(averaged, config.train_batch_size, config.seed)
    return averaged.eval()


def lr_of(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate `optimizer` steps with now (its first parameter group's)."""
    return optimizer.param_groups[0]["lr"]


def apply_update(accelerator: Accelerator, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> bool:
    """Backpropagate `loss` and step `optimizer`, unless the loss or a gradient is non-finite on some process,
    or a gradient so large that its square, which Adam accumulates, overflows (its steps would then be 0
    forever): then no process applies anything (they must agree, or the next all-reduce would hang). True when
    applied.

    fp16 scales the loss (`accelerator.backward`); a gradient that overflows the scale is then accelerate's
    GradScaler's to handle: the optimizer step skips the update and lowers the scale (alike on every
    process, whose gradients DDP has averaged). Only a non-finite loss counts as a non-finite step there."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if accelerator.gather(finite).min().item() == 0:
        return False
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    if accelerator.scaler is not None:
        optimizer.step()
        return True
    gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    finite = torch.stack([g.detach().float().square().isfinite().all() for g in gradients]).all()
    if accelerator.gather(finite.float().reshape(1)).min().item() == 0:
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


@torch.no_grad()
def all_finite(
    accelerator: Accelerator,
    models: list[torch.nn.Module],
    optimizers: list[torch.optim.Optimizer],
    ema: EMAModel | None,
) -> bool:
    """Whether every weight, optimizer state and EMA weight is finite on every process (before a checkpoint:
    one that holds non-finite values would only fail again when resumed)."""
    tensors = [p for model in models for p in model.parameters()]
    tensors += [v for optimizer in optimizers for state in optimizer.state.values() for v in state.values()]
    tensors += ema.shadow_params if ema is not None else []
    finite = torch.stack([t.float().isfinite().all() for t in tensors if torch.is_tensor(t)]).all()
    healthy = accelerator.gather(finite.float().reshape(1)).min().item() == 1
    if not healthy:
        logger.warning("Weights or optimizer states are not finite: no checkpoint is written.")
    return healthy
