"""Workflow plugins for the tests (loaded through VFX_WORKFLOW_MODULES, as a user's plugin
would be): `sleep` sleeps, fails on demand, or ignores cancel, so the queue's timing,
retries, kills and recovery can be tested without model run times in the way; `stamp` runs
live too, so streams are served for plugins as for built-in workflows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
from pydantic import BaseModel, Field

from vfxmocap.core.errors import InputError, InsufficientMemory
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import Frame, read_image, write_image
from vfxmocap.workflows import LiveSpec, Resources, Workflow, WorkflowResult, register


class SleepInputs(BaseModel):
    seconds: float = Field(0.0, ge=0, le=600)
    ignore_cancel: bool = False
    fail: str | None = Field(None, pattern="^(input|memory|crash)$")


def run(inputs: SleepInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    if inputs.fail == "input":
        raise InputError("this input is wrong on purpose")
    if inputs.fail == "memory":
        raise InsufficientMemory("out of memory on purpose")
    if inputs.fail == "crash":
        import os

        os._exit(9)  # the worker process dies mid-job
    steps = max(1, int(inputs.seconds * 20))
    progress.stage("sleep", steps)
    for _ in range(steps):
        if not inputs.ignore_cancel:
            cancel.check()
        time.sleep(inputs.seconds / steps)
        progress.advance()
    return WorkflowResult({}, {"slept_s": inputs.seconds})


register(
    Workflow(
        name="sleep",
        summary="Sleep (tests only).",
        inputs=SleepInputs,
        outputs=(),
        run=run,
        resources=Resources(device="cpu", memory_gb=0.0, timeout_s=120.0),
    )
)


register(
    Workflow(
        name="sleep_gpu",
        summary="Sleep on a GPU (tests only): no CPU-only worker can take it.",
        inputs=SleepInputs,
        outputs=(),
        run=run,
        resources=Resources(device="gpu", memory_gb=0.0, timeout_s=120.0),
    )
)


class StampOptions(BaseModel):
    image: str = Field(description="An image stamped into the corner of every frame.")
    size: int = Field(32, ge=4, le=256, description="The stamp's side, in pixels.")


@dataclass
class StampState:
    stamp: Frame
    frames: int = 0  # stateful across frames, as a tracker is


class StampProcessor:
    """A live processor of a plugin: the registry serves it with no code in the API or CLI."""

    name = "stamp"
    options_model = StampOptions

    def models(self, options: StampOptions) -> tuple[str, ...]:
        return ()

    def prepare(self, options: StampOptions) -> StampState:
        image = read_image(options.image)
        return StampState(cv2.resize(image, (options.size, options.size)))

    def process(self, frame: Frame, state: StampState, t: float) -> Frame:
        state.frames += 1
        out = frame.copy()
        side = min(state.stamp.shape[0], *frame.shape[:2])
        out[:side, :side] = state.stamp[:side, :side]
        return out

    def close(self, state: StampState) -> None:
        state.frames = -1


class StampInputs(StampOptions):
    target: str = Field(description="The image to stamp.")
    output: Path = Field(description="The stamped image.")


def stamp(inputs: StampInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    processor = StampProcessor()
    state = processor.prepare(inputs)
    try:
        write_image(inputs.output, processor.process(read_image(inputs.target), state, 0.0))
    finally:
        processor.close(state)
    return WorkflowResult({"output": inputs.output})


register(
    Workflow(
        name="stamp",
        summary="Stamp an image into the corner of a target, or of every live frame (tests only).",
        inputs=StampInputs,
        outputs=("output",),
        run=stamp,
        resources=Resources(device="cpu", memory_gb=0.0),
        files=("image", "target"),
        place_outputs=lambda inputs, job_dir: {"output": job_dir / "stamped.png"},
        live=LiveSpec("stamp", StampProcessor(), files=("image",), frames="target"),
    )
)
