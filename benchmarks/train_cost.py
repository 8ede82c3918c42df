"""Training cost of SMaRt: seconds per training iteration (D step(s) + G step) of the plain GAN and of
GAN + SMaRt in its `full` (backward through the score model, the paper's form) and `sds` (no score-model
Jacobian) forms, applied every step (interval 1) or lazily (interval 8), as ratios to the plain GAN.

Every variant is a real training run, in this process, of the GAN training of training/train_smart_gan.py
(`smart_hf.training.gan.train_gan`), from the same preset, differing only in the SMaRt flags. The variants
take turns for --rounds rounds of --steps generator steps, so a busy spell of a shared machine slows all of
them alike; a ratio is the median over rounds of the variant's seconds per iteration divided by the plain
GAN's in the same round. --steps should be a multiple of 8, so that interval 8 applies SMaRt on exactly 1 step
in 8.

    python -m benchmarks.train_cost                    # digits preset, 3 rounds of 64 steps
    OMP_NUM_THREADS=1 python -m benchmarks.train_cost --config training/configs/digits.yaml --rounds 5
"""

import os
import platform
import shlex
import statistics
import sys
import tempfile

import torch

from benchmarks.common import CONFIGS, REPO_ROOT, argument_parser, markdown_table, train_in_process

VARIANTS = {
    "plain GAN": "--smart_weight 0",
    "SMaRt full, interval 1": "--smart_gradient full --smart_interval 1",
    "SMaRt full, interval 8": "--smart_gradient full --smart_interval 8",
    "SMaRt sds, interval 1": "--smart_gradient sds --smart_interval 1",
    "SMaRt sds, interval 8": "--smart_gradient sds --smart_interval 8",
}
TARGET = ("SMaRt full, interval 8", 1.25)


def seconds_per_step(config: str, flags: str, steps: int, output_dir: str) -> float:
    """Seconds per iteration of one short training run (the training loop only, without setup and export)."""
    argv = [
        "--config",
        config,
        *shlex.split(flags),
        "--max_train_steps",
        str(steps),
        "--output_dir",
        output_dir,
    ]
    argv += (
        "--checkpointing_steps 0 --save_images_steps 0 --num_eval_samples 64 --num_sample_images 4".split()
    )
    return train_in_process(argv)["seconds_per_step"]


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Times every variant for --rounds rounds and prints the table; returns the seconds per iteration of
    each variant's runs."""
    parser = argument_parser(__doc__)
    parser.add_argument("--config", default=os.path.join(CONFIGS, "digits.yaml"))
    parser.add_argument("--steps", type=int, default=64, help="Generator steps per run (a multiple of 8).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--extra_args", default="", help="Flags passed to every run, e.g. '--train_batch_size 128'."
    )
    args = parser.parse_args(argv)

    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for index, (name, flags) in enumerate(VARIANTS.items()):
                output_dir = os.path.join(tmp, f"{round_index}-{index}")
                timings[name].append(
                    seconds_per_step(args.config, f"{flags} {args.extra_args}", args.steps, output_dir)
                )
                print(
                    f"round {round_index}: {name}: {timings[name][-1]:.4f} s/iteration",
                    file=sys.stderr,
                    flush=True,
                )
    load_after = os.getloadavg()

    plain = timings["plain GAN"]
    config = os.path.relpath(args.config, REPO_ROOT)
    setup = f"{config} {args.extra_args}; {args.rounds} rounds of {args.steps} steps"
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    print(
        f"\n{setup}; {machine} with {torch.get_num_threads()} threads; load average {load_before[0]:.1f} "
        f"before, {load_after[0]:.1f} after\n"
    )
    table = []
    for name, seconds in timings.items():
        ratios = [value / base for value, base in zip(seconds, plain, strict=True)]
        per_round = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        table.append(
            [name, f"{statistics.median(seconds):.4f}", f"{statistics.median(ratios):.2f}", per_round]
        )
    header = ["variant", "s / iteration (median)", "× plain GAN (median)", "× plain GAN per round"]
    print(markdown_table(header, table))
    name, limit = TARGET
    ratio = statistics.median(value / base for value, base in zip(timings[name], plain, strict=True))
    verdict = "met" if ratio <= limit else "NOT met"
    print(f"\nTarget: {name} ≤ {limit:.2f}× the plain GAN: {verdict} ({ratio:.2f}×).")
    return timings


if __name__ == "__main__":
    main()
