"""The workflow registry and the transcode workflow, called the way every surface calls them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vfxmocap.core.errors import InvalidParams
from vfxmocap.core.progress import Progress, ProgressEvent
from vfxmocap.media.image import write_image
from vfxmocap.media.video import probe
from vfxmocap.workflows import Workflow, all_workflows, get_workflow, register


def test_registry_lists_transcode_with_schema() -> None:
    names = [w.name for w in all_workflows()]
    assert "transcode" in names
    schema = get_workflow("transcode").inputs.model_json_schema()
    assert {"input", "output", "crf", "preset"} <= set(schema["properties"])


def test_unknown_workflow_names_the_known_ones() -> None:
    with pytest.raises(InvalidParams, match="unknown workflow 'nope'") as info:
        get_workflow("nope")
    assert "transcode" in info.value.hint


def test_a_name_registers_once() -> None:
    original = get_workflow("transcode")
    clash = Workflow(
        name="transcode",
        summary="x",
        inputs=original.inputs,
        outputs=(),
        run=original.run,
    )
    with pytest.raises(ValueError, match="registered twice"):
        register(clash)


def test_inputs_are_validated() -> None:
    with pytest.raises(ValidationError, match="crf"):
        get_workflow("transcode").parse({"input": "a.mp4", "output": "b.mp4", "crf": 99})


def test_transcode_image_sequence_with_progress(tmp_path: Path, carphone_frames) -> None:
    for i, frame in enumerate(carphone_frames[:20]):
        write_image(tmp_path / "seq" / f"f_{i:04d}.png", frame)
    events: list[ProgressEvent] = []
    outputs = get_workflow("transcode")(
        {"input": str(tmp_path / "seq" / "f_%04d.png"), "output": tmp_path / "o.mp4", "fps": 12},
        Progress(events.append, min_interval_s=0),
    )
    info = probe(outputs.outputs["video"])
    assert info.frame_count == 20 and info.fps == 12
    assert events[-1].value == 20 and events[-1].percent == 100.0
