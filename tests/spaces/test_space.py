"""The Gradio Space in spaces/smart_gan_demo: its generation functions, its API served in-process through
gradio_client, bad input, temporary files, 20 concurrent requests, and a front matter and pins that deploy.
tests/spaces/test_space_browser.py drives it in a browser; tests/spaces/test_push_space.py deploys it."""

import importlib.metadata
import importlib.util
import json
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import gradio as gr
import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from gradio_client import Client
from huggingface_hub import SpaceCard
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from PIL import Image

import smart_hf
from smart_hf.hub import export_pipeline
from smart_hf.models import DCGANGenerator, ResNetGenerator

APP_FILE = Path(__file__).resolve().parents[2] / "spaces" / "smart_gan_demo" / "app.py"
TINY = {"latent_dim": 8, "out_channels": 1, "resolution": 8, "base_channels": 8}
TILE = 128  # app.MIN_TILE_SIZE: an 8×8 image is shown 16× larger


def load_app() -> ModuleType:
    """Import the Space's app.py as a module (once), with no model found by default."""
    name = "smart_gan_demo_app"
    if name not in sys.modules:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SMART_MODEL", str(APP_FILE.parent / "no-such-model"))
            spec = importlib.util.spec_from_file_location(name, APP_FILE)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return sys.modules[name]


def save_tiny_teacher(folder: Path) -> Path:
    """A randomly initialised DDPMPipeline folder (unet/ + scheduler/), 8×8 grayscale."""
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder)
    return folder


def save_tiny_export(
    folder: Path, num_classes: int | None = 10, score_model: str | None = None, metrics: dict | None = None
) -> Path:
    """A smart_hf export of a tiny random generator, with contrasting pixels so that images are visible."""
    torch.manual_seed(0)
    model_class = DCGANGenerator if num_classes else ResNetGenerator
    generator = model_class(num_classes=num_classes, **TINY).eval()
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.mul_(3)
    return export_pipeline(generator, folder, score_model=score_model, metrics=metrics, num_samples=0)


@contextmanager
def served(demo: gr.Blocks) -> Iterator[str]:
    """Serve `demo` in this process on a free localhost port; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = load_app()
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        theme=app.THEME,
        css=app.CSS,
    )
    try:
        yield url
    finally:
        demo.close()


def component_value(demo: gr.Blocks, elem_id: str):
    return next(block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def with_metadata(export: Path, folder: Path, metadata: dict) -> Path:
    """A copy of `export` whose smart_hf.json is `metadata`."""
    copy = shutil.copytree(export, folder)
    (copy / "smart_hf.json").write_text(json.dumps(metadata))
    return copy


def handler(demo: gr.Blocks, api_name: str):
    """The function behind the event `api_name`, as the UI and the API call it."""
    return next(fn.fn for fn in demo.fns.values() if fn.api_name == api_name)


def gallery_images(gallery: list[dict]) -> list[Image.Image]:
    return [
        Image.open(item["image"]["path"] if isinstance(item["image"], dict) else item["image"])
        for item in gallery
    ]


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app()


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("space")
    teacher = save_tiny_teacher(root / "teacher")
    conditional_run = root / "conditional-run"  # a training output folder, the export in pipeline/
    return {
        "teacher": teacher,
        "conditional": save_tiny_export(
            conditional_run / "pipeline", score_model=str(teacher), metrics={"fid": 12.5, "global_step": 10}
        ),
        "conditional_run": conditional_run,
        "unconditional": save_tiny_export(root / "unconditional", num_classes=None),
        "lost_teacher": save_tiny_export(root / "lost-teacher", score_model=str(root / "deleted-teacher")),
    }


@pytest.fixture(scope="module")
def model(app, exports):
    """The teacher named as on a Space (SMART_TEACHER): smart_hf.json names a local one by its name only."""
    return app.load_model(exports["conditional_run"], teacher=str(exports["teacher"]))


@pytest.fixture(scope="module")
def demo(app, exports) -> gr.Blocks:
    return app.build_demo(exports["conditional"], teacher=str(exports["teacher"]))


@pytest.fixture(scope="module")
def url(demo) -> Iterator[str]:
    with served(demo) as url:
        yield url


@pytest.fixture(scope="module")
def client(url) -> Client:
    return Client(url, verbose=False)


# The generation functions, without the UI.


def test_loads_a_training_output_folder_and_its_teacher(model, exports):
    assert model.source == str(exports["conditional"])
    assert model.num_classes == 10
    assert model.teacher is not None and model.teacher.unet.config.sample_size == 8


def test_generate_is_reproducible_per_seed(app, model):
    images = app.generate(model, num_images=5, seed=3, class_label="4", truncation=0.8)
    assert len(images) == 5 and {(image.size, image.mode) for image in images} == {((8, 8), "L")}
    again = app.generate(model, num_images=5, seed=3, class_label=4, truncation=0.8)
    other = app.generate(model, num_images=5, seed=4, class_label=4, truncation=0.8)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again, strict=True))
    assert not np.array_equal(np.asarray(images[0]), np.asarray(other[0]))


def test_class_label_selects_the_class(app, model):
    zeros = app.generate(model, 2, seed=0, class_label=0)
    nines = app.generate(model, 2, seed=0, class_label="9")
    assert not np.array_equal(np.asarray(zeros[0]), np.asarray(nines[0]))


def test_unconditional_model_has_no_class_choice(app, exports):
    model = app.load_model(exports["unconditional"])
    assert model.num_classes == 0
    assert len(app.generate(model, 3, seed=1, class_label="random")) == 3
    with pytest.raises(ValueError, match="unconditional"):
        app.generate(model, 3, seed=1, class_label="2")


def test_upscale_keeps_pixels_crisp(app):
    image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    large = np.asarray(app.upscale(image))
    assert large.shape == (TILE, TILE)
    assert np.array_equal(large, np.kron(np.asarray(image), np.ones((16, 16), dtype=np.uint8)))


def test_interpolation_ends_at_each_seed(app, model):
    strip = app.interpolate(model, seed_a=5, seed_b=9, num_frames=6, class_label="2")
    assert strip.size == (6 * (TILE + 2) + 2, TILE + 4)
    pixels = np.asarray(strip)
    first, last = pixels[2 : 2 + TILE, 2 : 2 + TILE], pixels[2 : 2 + TILE, -2 - TILE : -2]
    assert np.array_equal(first, np.asarray(app.upscale(app.generate(model, 1, 5, "2")[0])))
    assert np.array_equal(last, np.asarray(app.upscale(app.generate(model, 1, 9, "2")[0])))


@pytest.mark.parametrize("scheduler", ["DDIM", "DDPM"])
def test_compare_with_teacher_times_both(app, model, scheduler):
    one_step, teacher, timings = app.compare_with_teacher(model, 4, 0, None, 1.0, scheduler, num_steps=3)
    assert one_step.size == teacher.size == (2 * (TILE + 2) + 2,) * 2
    assert np.asarray(teacher).std() > 0
    assert timings["one_step"] > 0 and timings["teacher"] > 0
    assert "speed-up" in app.speed_summary(timings, 4, scheduler, 3)


def test_missing_teacher_leaves_generation_working(app, exports):
    model = app.load_model(exports["lost_teacher"])
    assert model.teacher is None and "deleted-teacher" in model.teacher_status
    assert len(app.generate(model, 2)) == 2
    with pytest.raises(ValueError, match="No teacher"):
        app.compare_with_teacher(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_images": 0}, "number of images must be a whole number from 1 to 64"),
        ({"num_images": 65}, "from 1 to 64"),
        ({"num_images": 2.5}, "number of images"),
        ({"seed": -1}, "seed must be a whole number from 0 to 4294967295"),
        ({"seed": 2**32}, "seed"),
        ({"seed": "abc"}, "seed"),
        ({"class_label": 10}, "classes 0 to 9; there is no class 10"),
        ({"class_label": "cat"}, "not a whole number"),
        ({"truncation": 0}, "Truncation must be a number above 0"),
    ],
)
def test_bad_input_is_explained(app, model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        app.generate(model, **{"num_images": 2, **kwargs})


def test_missing_or_broken_model_is_explained(app, exports, tmp_path):
    with pytest.raises(ValueError, match="make demo"):
        app.load_model(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="no model_index.json|expected model_index.json"):
        app.load_model(tmp_path)
    broken = shutil.copytree(exports["unconditional"], tmp_path / "broken")
    (broken / "gan" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="Could not load the pipeline"):
        app.load_model(broken)


def test_missing_local_folder_is_not_taken_for_a_hub_id(app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(ValueError, match="no such folder"):
        app.resolve_model_path("outputs/demo")


def test_default_model_is_the_make_demo_output(app, monkeypatch):
    monkeypatch.delenv("SMART_MODEL", raising=False)
    assert app.default_model() == str(APP_FILE.parents[2] / "outputs" / "demo")
    monkeypatch.setenv("SMART_MODEL", "user/model")
    assert app.resolve_model_path(app.default_model()) == "user/model"


def test_a_space_without_its_model_variable_says_how_to_set_it(tmp_path, monkeypatch):
    """On a Space, app.py lies in /home/user/app: without SMART_MODEL there is no model to default to."""
    app_file = Path(shutil.copy(APP_FILE, tmp_path / "app.py"))
    monkeypatch.delenv("SMART_MODEL", raising=False)
    monkeypatch.delenv("SMART_TEACHER", raising=False)
    spec = importlib.util.spec_from_file_location("deployed_space_app", app_file)
    space = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(space)
    assert space.default_model() is None
    status = component_value(space.demo, "status")
    assert status == f"**No model loaded.** {space.NO_MODEL}"
    assert "set the Space variable SMART_MODEL" in status and "smart-hf push-space" in status
    with pytest.raises(gr.Error, match="No model chosen: set the Space variable SMART_MODEL"):
        handler(space.demo, "generate")(4, 0, "random", 1.0)


def test_a_local_teacher_that_is_not_here_asks_for_its_hub_id(app, exports, tmp_path):
    metadata = {"score_model": "deleted-teacher", "score_model_source": "local"}  # no local path in exports
    model = app.load_model(with_metadata(exports["unconditional"], tmp_path / "model", metadata))
    assert model.teacher is None
    assert model.teacher_status == (
        "The teacher `deleted-teacher` is neither a folder here nor a Hub id; set SMART_TEACHER to its Hub "
        "id."
    )


def test_a_hub_teacher_named_by_the_model_is_downloaded(app, exports, tmp_path, monkeypatch):
    """What a Space does with a model whose teacher is on the Hub: configs and safetensors only."""
    downloads = []

    def snapshot_download(repo_id, allow_patterns):
        downloads.append((repo_id, allow_patterns))
        return str(exports["teacher"])

    monkeypatch.setattr(app, "snapshot_download", snapshot_download)
    metadata = {"score_model": "google/ddpm-cifar10-32", "score_model_source": "hub"}
    model = app.load_model(with_metadata(exports["unconditional"], tmp_path / "model", metadata))
    assert model.teacher is not None and model.teacher.source == "google/ddpm-cifar10-32"
    assert downloads == [("google/ddpm-cifar10-32", app.TEACHER_ALLOW_PATTERNS)]
    assert all(pattern.endswith(("config.json", ".safetensors")) for pattern in app.TEACHER_ALLOW_PATTERNS)


def test_a_teacher_shipped_with_smart_hf_loads_from_the_installed_package(app, exports, tmp_path):
    """`make space` on a `make demo` model: its teacher is the digits score model shipped with smart_hf."""
    metadata = {"score_model": "digits-unet", "score_model_source": "smart_hf"}
    model = app.load_model(with_metadata(exports["unconditional"], tmp_path / "model", metadata))
    shipped = Path(smart_hf.__file__).parent / "assets" / "score_models" / "digits-unet"
    assert model.teacher is not None and model.teacher.source == str(shipped)
    assert model.teacher.unet.config.sample_size == 8


# The app, served in-process and called like a remote client.


def test_generate_endpoint(client):
    gallery, grid_path, timing = client.predict(5, 7, "3", 0.9, api_name="/generate")
    images = gallery_images(gallery)
    assert len(images) == 5 and {image.size for image in images} == {(TILE, TILE)}
    grid = Image.open(grid_path)
    assert grid.format == "PNG" and grid.size == (3 * (TILE + 2) + 2, 2 * (TILE + 2) + 2)
    assert "5 images in" in timing and "ms" in timing


def test_page_shows_the_model_and_its_metrics(demo, exports):
    assert str(exports["conditional"]) in component_value(demo, "status")
    markdown = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any("| fid | 12.5 |" in text for text in markdown)


def test_random_seed_endpoint(client):
    seeds = {client.predict(api_name="/random_seed") for _ in range(3)}
    assert all(0 <= seed <= 2**32 - 1 for seed in seeds) and len(seeds) > 1


def test_interpolate_and_compare_endpoints(client):
    strip = Image.open(client.predict(2, 3, 4, "random", 1.0, api_name="/interpolate"))
    assert strip.size == (4 * (TILE + 2) + 2, TILE + 4)
    one_step, teacher, speed = client.predict(4, 0, "1", 1.0, "DDIM", 2, api_name="/compare")
    assert Image.open(one_step).size == Image.open(teacher).size
    assert "teacher (DDIM, 2 steps)" in speed and "speed-up" in speed


@pytest.mark.parametrize(
    "inputs, message",
    [
        ((0, 0, "random", 1.0), "The number of images must be a whole number from 1 to 64, got 0."),
        ((65, 0, "random", 1.0), "The number of images must be a whole number from 1 to 64, got 65."),
        (("x", 0, "random", 1.0), "The number of images must be a whole number from 1 to 64, got 'x'."),
        ((4, -1, "random", 1.0), "The seed must be a whole number from 0 to 4294967295, got -1."),
        ((4, "abc", "random", 1.0), "The seed must be a whole number from 0 to 4294967295, got 'abc'."),
        ((4, None, "random", 1.0), "The seed must be a whole number from 0 to 4294967295, got None."),
        ((4, 0, "12", 1.0), "This model has classes 0 to 9; there is no class 12."),
        ((4, 0, "random", 0.0), "Truncation must be a number above 0 (1 = none), got 0.0."),
        ((4, 0, "random", "high"), "Truncation must be a number above 0 (1 = none), got 'high'."),
        ((4, 0, "random", [1]), "Truncation must be a number above 0 (1 = none), got [1]."),
    ],
)
def test_bad_input_shows_a_message(client, inputs, message):
    """Gradio's own preprocessing would answer a non-numeric value with a generic error: the app's checks
    answer every bad value with what to change."""
    with pytest.raises(Exception) as error:
        client.predict(*inputs, api_name="/generate")
    assert str(error.value) == message


@pytest.mark.parametrize(
    "api_name, inputs, message",
    [
        ("generate", ("four", 0, "random", 1.0), "The number of images must be a whole number from 1 to 64"),
        (
            "generate",
            (4, 1.5, "random", 1.0),
            "The seed must be a whole number from 0 to 4294967295, got 1.5",
        ),
        ("generate", (4, 0, {"class": 1}, 1.0), "The class label {'class': 1} is not a whole number."),
        ("generate", (4, 0, "random", "nan"), "Truncation must be a number above 0 (1 = none), got 'nan'."),
        ("interpolate", (0, "b", 8, "random", 1.0), "The seed B must be a whole number from 0 to 4294967295"),
        ("interpolate", (0, 1, "eight", "random", 1.0), "The number of frames must be a whole number from 2"),
        ("compare", (4, 0, "random", 1.0, "DDIM", "fifty"), "The number of teacher steps must be a whole"),
        (
            "compare",
            ("4", "x", "random", 1.0, "DDIM", 2),
            "The seed must be a whole number from 0 to 4294967295",
        ),
        (
            "compare",
            (4, 0, "random", 1.0, ["DDIM"], 2),
            "Unknown sampler ['DDIM']; choose one of ['DDIM', 'DDPM'].",
        ),
    ],
)
def test_handlers_turn_non_numeric_input_into_a_message(demo, api_name, inputs, message):
    """The functions behind the buttons, called directly with what an API client may send: a `gr.Error`
    with the message, whose traceback is not printed."""
    with pytest.raises(gr.Error) as error:
        handler(demo, api_name)(*inputs)
    assert str(error.value.message).startswith(message)
    assert error.value.print_exception is False


def test_generate_handler_returns_images_not_files(app, model, demo):
    """Gradio caches the returned images itself (and deletes them): the app writes no file of its own."""
    gallery, grid, timing = handler(demo, "generate")(5, "7", "3", 0.9)
    expected = app.generate(model, 5, 7, "3", 0.9)
    assert [np.asarray(image).tolist() for image in gallery] == [
        np.asarray(app.upscale(image)).tolist() for image in expected
    ]
    assert isinstance(grid, Image.Image)
    assert np.array_equal(np.asarray(grid), np.asarray(app.image_grid(expected)))
    assert timing.startswith("5 images in **")


def test_requests_leave_no_files_behind(app, exports, tmp_path, monkeypatch):
    """Every file a request makes is Gradio's cached copy of a returned image, in its cache folder, deleted
    when the server stops (and hourly, after an hour: `delete_cache`)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(temp / "gradio"))
    demo = app.build_demo(exports["conditional"], teacher=str(exports["teacher"]))
    assert demo.delete_cache == (3600, 3600)
    with served(demo) as url:
        client = Client(url, verbose=False, download_files=False)
        for seed in range(3):
            client.predict(4, seed, "random", 1.0, api_name="/generate")
        client.predict(2, 3, 4, "random", 1.0, api_name="/interpolate")
        client.predict(2, 0, "random", 1.0, "DDIM", 2, api_name="/compare")
        written = {path for path in temp.rglob("*") if path.is_file()}
        cached = {Path(file) for files in demo.temp_file_sets for file in files}
        # per /generate: 4 gallery images and the grid; one strip; two compare grids
        assert len(written) == 3 * 5 + 1 + 2 and written <= cached
        assert all(path.is_relative_to(temp / "gradio") and path.suffix == ".png" for path in written)
    assert [path for path in temp.rglob("*") if path.is_file()] == []


def test_app_without_a_teacher_says_why(app, exports):
    demo = app.build_demo(exports["lost_teacher"])
    assert "deleted-teacher" in component_value(demo, "teacher-status")
    assert "/compare" not in {f"/{fn.api_name}" for fn in demo.fns.values()}


@pytest.mark.parametrize("kind", ["missing", "broken"])
def test_app_without_a_model_starts_and_explains(app, exports, tmp_path, kind):
    path = tmp_path / "missing"
    if kind == "broken":
        path = shutil.copytree(exports["unconditional"], tmp_path / "broken")
        (path / "model_index.json").write_text("{not json")
    demo = app.build_demo(path)
    assert "No model loaded" in component_value(demo, "status")
    with served(demo) as url:
        with pytest.raises(Exception, match="No model loaded"):
            Client(url, verbose=False).predict(4, 0, "random", 1.0, api_name="/generate")


def test_twenty_concurrent_requests_all_complete(app, demo, client):
    assert demo._queue.default_concurrency_limit == app.CONCURRENCY_LIMIT
    assert demo._queue.max_size == app.MAX_QUEUE_SIZE >= 20
    compare = next(fn for fn in demo.fns.values() if fn.api_name == "compare")
    assert compare.concurrency_limit == 1  # slow teacher runs queue among themselves
    start = time.perf_counter()
    jobs = [client.submit(4, seed, "random", 1.0, api_name="/generate") for seed in range(20)]
    results = [job.result(timeout=120) for job in jobs]
    elapsed = time.perf_counter() - start
    for seed, (gallery, grid_path, _) in enumerate(results):
        images = gallery_images(gallery)
        assert len(images) == 4 and all(image.size == (TILE, TILE) for image in images), seed
        assert Image.open(grid_path).format == "PNG"
    first_images = {gallery_images(gallery)[0].tobytes() for gallery, _, _ in results}
    assert len(first_images) == 20  # each request got its own seed's images
    print(f"20 concurrent /generate requests: {elapsed:.1f} s")


# What the Space deploys with.


def space_card() -> SpaceCard:
    return SpaceCard.load(APP_FILE.parent / "README.md")


def pinned_requirements() -> dict[str, str]:
    lines = (APP_FILE.parent / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_front_matter_deploys_on_spaces():
    data = space_card().data
    assert (data.sdk, data.app_file, data.python_version) == ("gradio", "app.py", "3.11")
    assert data.sdk_version == pinned_requirements()["gradio"] == gr.__version__
    assert data.models is None  # `smart-hf push-space` writes the deployed model and teacher there
    assert APP_FILE.read_text().endswith(
        '\n\nif __name__ == "__main__":\n    demo.launch(theme=THEME, css=CSS)\n'
    )


def test_pins_are_the_tested_versions_and_admit_the_python_version():
    """Each pin is the version these tests run with, and its Requires-Python admits the front matter's
    python_version; Spaces' default 3.10 would not do (numpy 2.4 and diffusers 0.42 need 3.11)."""
    python = space_card().data.python_version
    pins = pinned_requirements()
    assert list(pins) == ["torch", "diffusers", "gradio", "huggingface_hub", "safetensors", "numpy", "pillow"]
    for name, version in pins.items():
        metadata = importlib.metadata.metadata(name)
        assert Version(metadata["Version"]).base_version == version, name  # torch is 2.13.0+cpu here
        assert SpecifierSet(metadata["Requires-Python"]).contains(python), (name, metadata["Requires-Python"])
    too_old = [
        name
        for name in pins
        if not SpecifierSet(importlib.metadata.metadata(name)["Requires-Python"]).contains("3.10")
    ]
    assert too_old == ["diffusers", "numpy"]
