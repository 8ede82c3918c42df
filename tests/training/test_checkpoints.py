"""The checkpoint scheme both loops share: complete checkpoints only, numeric order, pruning after writing."""

import json

import torch
from accelerate import Accelerator, PartialState

from smart_hf.training.checkpoints import (
    find_checkpoint,
    incomplete_checkpoints,
    load_checkpoint,
    save_checkpoint,
    sorted_checkpoints,
)


def test_only_complete_numbered_checkpoints_count_in_numeric_order(tmp_path):
    PartialState(cpu=True)  # find_checkpoint warns through accelerate's logger, which needs a state
    for name in (
        "checkpoint-30",
        "checkpoint-100",
        "checkpoint-best",
        "checkpoint-200.partial",
        "checkpoint-250",
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training_state.json").write_text("{}")
    (tmp_path / "checkpoint-250" / "training_state.json").unlink()  # stopped before its state was written
    (tmp_path / "checkpoint-300").write_text("a file, not a checkpoint")
    assert sorted_checkpoints(str(tmp_path)) == ["checkpoint-30", "checkpoint-100"]
    assert incomplete_checkpoints(str(tmp_path)) == ["checkpoint-200.partial", "checkpoint-250"]
    assert find_checkpoint(str(tmp_path), "latest") == str(tmp_path / "checkpoint-100")
    assert sorted_checkpoints(str(tmp_path / "missing")) == []


def test_save_replaces_a_partial_checkpoint_prunes_after_writing_and_loads_back(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    save_checkpoint(accelerator, str(tmp_path), 1, {"global_step": 1}, total_limit=1)
    (tmp_path / "checkpoint-2.partial").mkdir()  # left by a run killed while writing checkpoint-2
    (tmp_path / "checkpoint-2.partial" / "stale").write_text("")
    with torch.no_grad():
        model.weight.fill_(3.0)
    path = save_checkpoint(accelerator, str(tmp_path), 2, {"global_step": 2}, total_limit=1)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert not (tmp_path / "checkpoint-2" / "stale").exists()
    with torch.no_grad():
        model.weight.zero_()
    assert load_checkpoint(accelerator, path) == {"global_step": 2}
    assert torch.equal(model.weight, torch.full((2, 2), 3.0))
    assert json.loads((tmp_path / "checkpoint-2" / "training_state.json").read_text()) == {"global_step": 2}
