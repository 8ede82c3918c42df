"""Speed of SmartOneStepPipeline on this machine: images/second at batch 1 and 64, and the time to load the
pipeline from a local export folder.

The generator is a 32×32 RGB `ResNetGenerator` with its default size and *random weights*: speed does not
depend on what the weights learned, so no training is needed. Timings are the median of `--repeats` runs after
one warm-up run. The load time is the median of `--repeats` loads of the export in this process (torch and
diffusers already imported), and once in a fresh process, split into imports and load.

    python -m benchmarks.pipeline_speed
    python -m benchmarks.pipeline_speed --num_threads 1   # on a busy machine: avoids OpenMP contention
    python -m benchmarks.pipeline_speed --device cuda --dtype float16
"""

import statistics
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.common import argument_parser, synchronize
from smart_hf.hub import export_pipeline
from smart_hf.models import ResNetGenerator
from smart_hf.pipelines import SmartOneStepPipeline

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
COLD_START = """
import sys, time
start = time.perf_counter()
from smart_hf.pipelines import SmartOneStepPipeline
imported = time.perf_counter()
SmartOneStepPipeline.from_pretrained(sys.argv[1])
print(imported - start, time.perf_counter() - imported)
"""


def median_seconds(pipe: SmartOneStepPipeline, repeats: int, device: str, **call_kwargs) -> float:
    pipe(**call_kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipe(**call_kwargs)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--output_types", nargs="+", default=["pt", "pil"], choices=["pt", "np", "pil"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument(
        "--num_threads", type=int, default=None, help="CPU threads (default: torch's choice)."
    )
    args = parser.parse_args()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)

    torch.manual_seed(0)
    generator = ResNetGenerator(resolution=args.resolution).eval().to(args.device)
    if args.dtype != "float32":
        generator = generator.to(DTYPES[args.dtype])
    num_parameters = sum(p.numel() for p in generator.parameters())
    print(
        f"ResNetGenerator {args.resolution}×{args.resolution} RGB, default config, "
        f"{num_parameters / 1e6:.2f} M parameters, RANDOM weights (speed only); {args.device}, {args.dtype}, "
        f"torch {torch.__version__}, CPU threads: {torch.get_num_threads()}\n"
    )
    pipe = SmartOneStepPipeline(gan=generator)
    print("| batch size | output_type | images/s | ms/batch |")
    print("| ---: | --- | ---: | ---: |")
    for batch_size in args.batch_sizes:
        for output_type in args.output_types:
            seconds = median_seconds(
                pipe, args.repeats, args.device, batch_size=batch_size, output_type=output_type
            )
            print(f"| {batch_size} | {output_type} | {batch_size / seconds:,.0f} | {1000 * seconds:.1f} |")

    with tempfile.TemporaryDirectory() as folder:
        export_pipeline(generator, folder, num_samples=0)
        load_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            SmartOneStepPipeline.from_pretrained(folder)
            load_times.append(time.perf_counter() - start)
        cold = subprocess.run(
            [sys.executable, "-c", COLD_START, folder], check=True, capture_output=True, text=True
        ).stdout.split()
    print(
        f"\nSmartOneStepPipeline.from_pretrained(<local export>): {statistics.median(load_times):.3f} s "
        f"median in this process (target < 2 s); in a fresh process: {float(cold[0]):.2f} s to import torch, "
        f"diffusers and smart_hf, then {float(cold[1]):.3f} s to load."
    )


if __name__ == "__main__":
    main()
