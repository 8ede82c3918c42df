"""Cost of SMaRt at the presets' real model sizes: seconds per training step and peak memory of the plain GAN
and of GAN + SMaRt, with the memory and speed options of training/train_smart_gan.py.

Models, all with *random weights* (they measure cost, never quality; nothing is downloaded):
- cifar10: training/configs/cifar10_ddpm.yaml's ResNet G (base 64, latent 128) and D (base 128) at 32×32, and
  a `UNet2DModel` built from the config of google/ddpm-cifar10-32 (35.7M parameters, `CIFAR10_UNET` below).
- lsun: training/configs/lsun_bedroom.yaml's G and D (base 32) at 256×256, and the UNet config of
  google/ddpm-ema-bedroom-256 (114M, `LSUN_UNET`), at a small batch (--lsun_batch_size).
- growth: the cifar10 models at resolution 8, 32 and 64 (the UNet is convolutional: the same 35.7M weights
  run at any size that halves three times), and at several batch sizes.

A step is what train_smart_gan.py runs per generator step (`smart_hf.losses.GANLoss`, hinge loss as in the
presets): a discriminator step, then a generator step, each with its backward pass and Adam update. A SMaRt
step adds the term to the generator step, computed on that step's own fakes (t in the cifar10 preset's
[40, 60]). In each configuration plain and SMaRt steps alternate after a warm-up pair, so a busy spell of a
shared machine slows both alike; SMaRt at interval k then costs ((k − 1)·plain + SMaRt)/k per step on average,
reported as seconds and as a ratio to the plain step. Times are medians over --repeats steps of each kind.

Peak memory: each configuration runs in a fresh process. On a CPU it is the peak resident set size during the
measured steps (sampled every 2 ms; glibc returns freed tensors to the system, MALLOC_MMAP_THRESHOLD_) less
the resident size after the warm-up steps, which holds the models and Adam's states: the activations,
gradients and temporaries of a step. On a GPU it is torch.cuda.max_memory_allocated less the memory allocated
then. A SMaRt configuration's peak is that of its SMaRt steps (the larger of the two kinds).

bf16 runs G, D and the score model under autocast with the score model's weights in bf16 (as
--mixed_precision bf16 does); "SMaRt loss" is the score-matching error of one fixed batch of fakes (the same
weights, latents, t and noise in every configuration), for comparing precisions. "compiled" is torch.compile
of G and the score UNet (not of the resnet D, whose spectral norm fails compiled), its first steps not timed;
"channels_last" puts the three models in that memory format (--channels_last).

    python -m benchmarks.scale                          # everything, 1 thread per process
    python -m benchmarks.scale --parts cifar10 --repeats 5 --configs full full_gc
    python -m benchmarks.scale --tiny                    # tiny models: checks the script quickly
    python -m benchmarks.scale --shrink_runs outputs/benchmarks/scale_shrink/*/   # digits quality per shrink
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace

import torch

from benchmarks.common import argument_parser, markdown_table, mean_std, read_metrics, synchronize

# The UNet configs of the presets' score models (their config.json, without the bookkeeping keys).
CIFAR10_UNET = {  # google/ddpm-cifar10-32
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "act_fn": "silu",
    "attention_head_dim": None,
    "center_input_sample": False,
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "time_embedding_type": "positional",
}
LSUN_UNET = {  # google/ddpm-ema-bedroom-256
    **CIFAR10_UNET,
    "sample_size": 256,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "down_block_types": [
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
}
TINY_UNET = {
    **CIFAR10_UNET,
    "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
}
# (UNet config, G base channels, D base channels, resolution) of each model set.
MODELS = {
    "cifar10": (CIFAR10_UNET, 64, 128, 32),
    "lsun": (LSUN_UNET, 32, 32, 256),
    "tiny": (TINY_UNET, 8, 8, 8),
}
LATENT_DIM = 128
T_RANGE = (40, 60)  # the cifar10 preset's
INTERVALS = (1, 4, 8, 16)
TARGET_INTERVAL, TARGET_RATIO = 8, 1.15


@dataclass
class Case:
    """One configuration, measured in its own process."""

    models: str = "cifar10"
    resolution: int | None = None  # default: the model set's
    batch_size: int = 16
    smart: str = "full"  # "none" (plain steps only), "full" or "sds"
    batch_shrink: int = 1
    precision: str = "fp32"  # or "bf16"
    checkpointing: bool = False
    compiled: bool = False
    channels_last: bool = False
    repeats: int = 3
    device: str = "cpu"


# name: (label, changes to the base case)
CONFIGS = {
    "plain": ("plain GAN", {"smart": "none"}),
    "plain_gc": ("plain GAN, gradient checkpointing", {"smart": "none", "checkpointing": True}),
    "full": ("SMaRt full (the paper's form)", {}),
    "full_gc": ("SMaRt full, gradient checkpointing", {"checkpointing": True}),
    "full_bf16": ("SMaRt full, bf16", {"precision": "bf16"}),
    "full_compiled": ("SMaRt full, compiled G and UNet", {"compiled": True}),
    "full_channels_last": ("SMaRt full, channels_last", {"channels_last": True}),
    "shrink2": ("SMaRt full, batch shrink 2", {"batch_shrink": 2}),
    "shrink4": ("SMaRt full, batch shrink 4", {"batch_shrink": 4}),
    "sds": ("SMaRt sds", {"smart": "sds"}),
    "sds_shrink4": ("SMaRt sds, batch shrink 4", {"smart": "sds", "batch_shrink": 4}),
}
LSUN_CONFIGS = ("plain", "full", "full_gc")


def build_models(case: Case):
    """G, D and the frozen score of a case, seeded alike in every process."""
    from diffusers import DDPMScheduler, UNet2DModel

    from smart_hf.models import ResNetDiscriminator, ResNetGenerator
    from smart_hf.scores import ModelScore

    unet_config, g_channels, d_channels, resolution = MODELS[case.models]
    resolution = case.resolution or resolution
    torch.manual_seed(0)
    generator = ResNetGenerator(LATENT_DIM, 3, resolution, base_channels=g_channels)
    discriminator = ResNetDiscriminator(3, resolution, base_channels=d_channels)
    unet = UNet2DModel(**{**unet_config, "sample_size": resolution})
    score = ModelScore(unet, DDPMScheduler(num_train_timesteps=1000), (3, resolution, resolution))
    return generator, discriminator, score


class PeakMemory:
    """Peak memory of the work between `start` and `stop`, over the memory in use at `start` (MiB)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = self.baseline = 0
        self._thread: threading.Thread | None = None
        self._running = False

    @staticmethod
    def resident_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, self.resident_bytes())
            time.sleep(0.002)

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return
        self.baseline = self.peak = self.resident_bytes()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._running = False
            self._thread.join()
        return (self.peak - self.baseline) / 2**20


def measure(case: Case) -> dict:
    """Seconds of alternating plain and SMaRt steps (plain only for smart 'none'), the peak memory, and the
    SMaRt loss of a fixed batch."""
    from smart_hf.losses import GANLoss
    from smart_hf.smart import SmartRegularizer
    from smart_hf.training import build

    device = torch.device(case.device)
    generator, discriminator, score = build_models(case)
    sizes = {
        name: sum(p.numel() for p in model.parameters())
        for name, model in (("G", generator), ("D", discriminator), ("UNet", score.model))
    }
    dtype = torch.bfloat16 if case.precision == "bf16" else torch.float32
    generator, discriminator = generator.to(device), discriminator.to(device)
    score = score.to(device=device, dtype=dtype)  # the score model's weights in the compute dtype
    if case.checkpointing:
        build.enable_gradient_checkpointing(generator, discriminator, score)
    if case.channels_last:
        build.to_channels_last(generator, discriminator, score)
    g_run, d_run = generator, discriminator
    if case.compiled:
        g_run = torch.compile(generator)  # not D: its spectral norm fails compiled (see --compile_models)
        score = build.compile_score(score)
    optimizers = [
        torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.0, 0.9))
        for model in (generator, discriminator)
    ]
    smart = None
    if case.smart != "none":
        smart = SmartRegularizer(
            score,
            weight=0.01,
            t_min=T_RANGE[0],
            t_max=T_RANGE[1],
            interval=1,
            gradient_mode=case.smart,
            batch_shrink=case.batch_shrink,
        )
    losses = {"plain": GANLoss(g_run, d_run, "hinge"), "smart": GANLoss(g_run, d_run, "hinge", smart=smart)}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.precision == "bf16")
    real = torch.rand(case.batch_size, 3, *score.sample_shape[1:], device=device) * 2 - 1
    if case.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)

    smart_loss = None
    if smart is not None:  # the same fakes, t and noise in every process
        with torch.no_grad(), autocast:
            fake = generator(
                torch.randn(case.batch_size, LATENT_DIM, generator=torch.Generator().manual_seed(1)).to(
                    device
                )
            )
            noise_rng = torch.Generator(device).manual_seed(2)
            smart_loss = smart.score_matching_loss(fake, generator=noise_rng)[1].item()

    def step(kind: str) -> float:
        synchronize(device)
        start = time.perf_counter()
        loss = losses[kind]
        latents = torch.randn(case.batch_size, LATENT_DIM, device=device)
        with autocast:
            d_total = loss.discriminator_phase(real, latents, step=1).total  # step 1: no lazy R1
        optimizers[1].zero_grad(set_to_none=True)
        d_total.backward()
        optimizers[1].step()
        discriminator.requires_grad_(False)
        with autocast:
            g_total = loss.generator_phase(torch.randn_like(latents), step=0).total
        optimizers[0].zero_grad(set_to_none=True)
        g_total.backward()
        optimizers[0].step()
        discriminator.requires_grad_(True)
        synchronize(device)
        return time.perf_counter() - start

    kinds = ["plain"] if smart is None else ["plain", "smart"]
    warm_up = time.perf_counter()
    for _ in range(2 if case.compiled else 1):
        for kind in kinds:
            step(kind)
    warm_up = time.perf_counter() - warm_up
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    memory = PeakMemory(device)
    memory.start()
    seconds = {kind: [] for kind in kinds}
    for _ in range(case.repeats):
        for kind in kinds:
            seconds[kind].append(step(kind))
    peak = memory.stop()
    return {
        "case": asdict(case),
        "parameters": sizes,
        "seconds": seconds,
        "plain": statistics.median(seconds["plain"]),
        "smart": statistics.median(seconds["smart"]) if smart is not None else None,
        "peak_mib": peak,
        "smart_loss": smart_loss,
        "warm_up_seconds": warm_up,
    }


def interval_average(plain: float, smart: float, interval: int) -> float:
    """Seconds per step, on average, of SMaRt applied on every `interval`-th step."""
    return ((interval - 1) * plain + smart) / interval


def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def run_case(case: Case, threads: int) -> dict:
    """`measure(case)` in a fresh process (its own peak memory), with `threads` torch threads on a CPU."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MALLOC_MMAP_THRESHOLD_": "131072",  # freed tensors go back to the system: RSS follows the tensors
        "TQDM_DISABLE": "1",
        "TORCHINDUCTOR_COMPILE_THREADS": "1",  # torch.compile builds in this process, not a worker pool
    }
    command = [sys.executable, "-m", "benchmarks.scale", "--worker", json.dumps(asdict(case))]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def millions(count: int) -> str:
    return f"{count / 1e6:.1f}M"


def cost_cells(result: dict) -> list[str]:
    """Plain and SMaRt seconds, then seconds (ratio to plain) at each interval."""
    plain, smart = result["plain"], result["smart"]
    if smart is None:
        return [f"{plain:.3f}", "–", *["–"] * len(INTERVALS)]
    cells = [f"{plain:.3f}", f"{smart:.3f}"]
    for interval in INTERVALS:
        average = interval_average(plain, smart, interval)
        cells.append(f"{average:.3f} ({average / plain:.2f}×)")
    return cells


def configs_table(results: dict[str, dict]) -> str:
    reference = results.get("full", {}).get("smart_loss")
    rows = []
    for name, result in results.items():
        loss = result["smart_loss"]
        loss_cell = "–" if loss is None else f"{loss:.5f}"
        if loss is not None and reference and name != "full":
            loss_cell += f" ({100 * (loss - reference) / reference:+.2f}%)"
        rows.append([CONFIGS[name][0], *cost_cells(result), f"{result['peak_mib']:.0f}", loss_cell])
    header = ["configuration", "plain s/step", "SMaRt s/step"]
    header += [f"interval {k}: s/step (× plain)" for k in INTERVALS]
    header += ["peak memory (MiB)", "SMaRt loss (vs full fp32)"]
    return markdown_table(header, rows)


def growth_table(results: list[dict]) -> str:
    rows = []
    for result in results:
        case = result["case"]
        plain, smart = result["plain"], result["smart"]
        average = interval_average(plain, smart, TARGET_INTERVAL)
        rows.append(
            [
                case["resolution"],
                case["batch_size"],
                f"{plain:.3f}",
                f"{smart:.3f}",
                f"{smart / plain:.2f}×",
                f"{average / plain:.2f}×",
                f"{result['peak_mib']:.0f}",
            ]
        )
    header = ["resolution", "batch", "plain s/step", "SMaRt s/step", "SMaRt step × plain"]
    header += [f"interval {TARGET_INTERVAL} × plain", "SMaRt peak memory (MiB)"]
    return markdown_table(header, rows)


def readings(results: dict[str, dict]) -> list[str]:
    """The issue's targets, read off the cifar10 results that were measured."""
    lines = []
    for name in CONFIGS:
        result = results.get(name)
        if result is None or result["smart"] is None:
            continue
        ratio = interval_average(result["plain"], result["smart"], TARGET_INTERVAL) / result["plain"]
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        lines.append(
            f"- {CONFIGS[name][0]}: interval {TARGET_INTERVAL} costs {ratio:.2f}× a plain step ({verdict} "
            f"≤ {TARGET_RATIO}×)."
        )
    if "full" in results and "full_gc" in results:
        cut = 1 - results["full_gc"]["peak_mib"] / results["full"]["peak_mib"]
        lines.append(
            f"- Gradient checkpointing cuts a SMaRt step's peak memory by {100 * cut:.0f}% (target ≥ 40%)."
        )
    if "full" in results and "full_bf16" in results:
        reference, bf16 = results["full"]["smart_loss"], results["full_bf16"]["smart_loss"]
        lines.append(
            f"- bf16 SMaRt loss differs from fp32 by {100 * abs(bf16 - reference) / reference:.2f}% on the "
            "same batch (target ≤ 2%)."
        )
    return lines


def shrink_quality_table(run_dirs: list[str]) -> str:
    """FD_digits, precision and recall (mean ± std over the runs) per --smart_batch_shrink, from the
    metrics.json of finished digits runs."""
    groups: dict[int, list[dict]] = {}
    for run_dir in run_dirs:
        metrics = read_metrics(run_dir)
        groups.setdefault(metrics["config"]["smart_batch_shrink"], []).append(metrics)
    rows = []
    for shrink, runs in sorted(groups.items()):
        rows.append(
            [
                shrink,
                len(runs),
                mean_std([m["fd_digits"] for m in runs], ".2f"),
                mean_std([m["precision"] for m in runs], ".3f"),
                mean_std([m["recall"] for m in runs], ".3f"),
                ", ".join(f"{m['fd_digits']:.2f}" for m in sorted(runs, key=lambda m: m["config"]["seed"])),
            ]
        )
    header = ["--smart_batch_shrink", "runs", "FD_digits", "precision", "recall", "FD_digits per seed"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a Case as JSON: measure it here
    parser.add_argument(
        "--parts", nargs="+", default=["cifar10", "lsun", "growth"], choices=["cifar10", "lsun", "growth"]
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch_size", type=int, default=16, help="cifar10 batch (the preset's is 64).")
    parser.add_argument("--lsun_batch_size", type=int, default=2)
    parser.add_argument("--lsun_repeats", type=int, default=1, help="Measured lsun steps of each kind.")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--repeats", type=int, default=3, help="Measured steps of each kind.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process on a CPU.")
    parser.add_argument("--device", default="auto", help="auto: cuda when available, else cpu.")
    parser.add_argument("--tiny", action="store_true", help="Tiny models (8×8), for testing the script.")
    parser.add_argument("--output", default="outputs/benchmarks/scale/results.json")
    parser.add_argument(
        "--shrink_runs",
        nargs="+",
        help="Only summarize these finished digits runs' quality per batch shrink.",
    )
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(Case(**json.loads(args.worker)))))
        return {}
    if args.shrink_runs:
        print(shrink_quality_table(args.shrink_runs))
        return {}

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    base = Case(repeats=args.repeats, device=device, batch_size=args.batch_size)
    lsun = replace(base, models="lsun", batch_size=args.lsun_batch_size, repeats=args.lsun_repeats)
    if args.tiny:
        base = replace(base, models="tiny", batch_size=4)
        lsun = replace(base, resolution=16, batch_size=2)
    memory_kind = (
        "torch.cuda.max_memory_allocated over the allocation after warm-up"
        if device == "cuda"
        else "peak RSS over the RSS after warm-up, each configuration in a fresh process"
    )
    print(
        f"Device: {device_name(device)} ({device}); torch {torch.__version__}; "
        f"{args.threads if device == 'cpu' else '-'} thread(s) per process; memory: {memory_kind}."
    )
    output: dict = {"device": device_name(device), "memory": memory_kind, "argv": argv or sys.argv[1:]}
    started = time.time()

    def save() -> None:  # after every part: a long run keeps what it measured
        if args.output:
            os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
            with open(args.output, "w") as f:
                json.dump(output, f, indent=1)

    def measure_configs(case: Case, names) -> dict[str, dict]:
        results = {}
        for name in names:
            results[name] = run_case(replace(case, **CONFIGS[name][1]), args.threads)
            print(
                f"  {name}: {json.dumps({k: results[name][k] for k in ('plain', 'smart', 'peak_mib')})}",
                flush=True,
            )
        return results

    if "cifar10" in args.parts:
        results = measure_configs(base, args.configs)
        sizes = next(iter(results.values()))["parameters"]
        print(
            f"\n### {base.models} sizes: G {millions(sizes['G'])}, D {millions(sizes['D'])}, score UNet "
            f"{millions(sizes['UNet'])} (random weights), batch {base.batch_size}\n"
        )
        print(configs_table(results))
        print("\n" + "\n".join(readings(results)))
        output["cifar10"] = results
        save()
    if "lsun" in args.parts:
        results = measure_configs(lsun, [name for name in LSUN_CONFIGS if name in args.configs])
        sizes = next(iter(results.values()))["parameters"]
        print(
            f"\n### {lsun.models} sizes: G {millions(sizes['G'])}, D {millions(sizes['D'])}, score UNet "
            f"{millions(sizes['UNet'])} (random weights), batch {lsun.batch_size}\n"
        )
        print(configs_table(results))
        output["lsun"] = results
        save()
    if "growth" in args.parts:
        resolutions = [8, 16] if args.tiny else args.resolutions
        batch_sizes = [2, 4] if args.tiny else args.batch_sizes
        middle = 8 if args.tiny else 32
        cases = [replace(base, resolution=r) for r in resolutions]
        cases += [replace(base, resolution=middle, batch_size=b) for b in batch_sizes if b != base.batch_size]
        results = [run_case(case, args.threads) for case in cases]
        results.sort(
            key=lambda r: (
                r["case"]["batch_size"] != base.batch_size,
                r["case"]["resolution"],
                r["case"]["batch_size"],
            )
        )
        print(f"\n### Cost growth: SMaRt full, fp32, {base.models} models\n")
        print(growth_table(results))
        output["growth"] = results
    output["seconds"] = time.time() - started
    print(f"\nTotal {output['seconds'] / 60:.1f} min.")
    save()
    return output


if __name__ == "__main__":
    main()
