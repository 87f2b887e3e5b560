"""Workflow commands: `vfx run` for any registered workflow, friendly front ends for the
built-in ones (their defaults come from the workflow's input model), live and demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from vfxmocap.cli.app import app
from vfxmocap.cli.common import (
    JsonOpt,
    SetsOpt,
    err,
    given,
    guarded,
    listify,
    literal,
    out,
    parse_sets,
    print_json,
    progress_bar,
    report,
    result_dict,
    run_workflow,
    validation_summary,
)
from vfxmocap.core.errors import InvalidParams
from vfxmocap.core.progress import CancelToken
from vfxmocap.workflows.registry import WorkflowResult

if TYPE_CHECKING:
    from vfxmocap.media.sources import FrameSource
    from vfxmocap.processors.live import LiveStats


@app.command("workflows")
@guarded
def workflows_command(
    name: Annotated[str | None, typer.Argument(help="Show this workflow's inputs.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The registered workflows (plugins included), or one workflow's inputs and defaults."""
    from vfxmocap.workflows import all_workflows, get_workflow

    if name is None:
        rows = [{"name": w.name, "summary": w.summary} for w in all_workflows()]
        if as_json:
            print_json(rows)
            return
        for row in rows:
            out.print(f"[bold]{row['name']}[/]  {row['summary']}", soft_wrap=True)
        return
    workflow = get_workflow(name)
    schema = workflow.inputs.model_json_schema()
    if as_json:
        print_json(schema)
        return
    out.print(f"[bold]{workflow.name}[/]: {workflow.summary}", soft_wrap=True)
    for line in _schema_lines(schema, schema.get("$defs", {})):
        out.print(line, soft_wrap=True, highlight=False)


def _schema_lines(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per input, nested option groups as dotted keys (what `vfx run -s` takes)."""
    required = set(schema.get("required", ()))
    lines = []
    for key, prop in schema.get("properties", {}).items():
        ref = prop.get("$ref") or next(
            (p["$ref"] for p in [*prop.get("allOf", ()), *prop.get("anyOf", ())] if "$ref" in p),
            None,
        )
        if ref is not None and "properties" in defs.get(ref.rsplit("/", 1)[-1], {}):
            lines += _schema_lines(defs[ref.rsplit("/", 1)[-1]], defs, f"{prefix}{key}.")
            continue
        default = "required" if key in required else f"default {prop.get('default')!r}"
        choices = prop.get("enum")
        about = prop.get("description", "")
        extra = f" one of {', '.join(map(str, choices))}" if choices else ""
        lines.append(f"  {prefix}{key}  [dim]({default}{extra})[/] {escape(about)}")
    return lines


@app.command("run")
@guarded
def run_command(
    workflow: Annotated[str, typer.Argument(help="A workflow name (`vfx workflows`).")],
    sets: SetsOpt = None,
    output_dir: Annotated[
        Path, typer.Option(help="Where outputs go when no output field is set.")
    ] = Path("out"),
    as_json: JsonOpt = False,
) -> None:
    """Run any registered workflow here, plugins included, e.g.
    `vfx run swap -s sources=me.jpg -s target=shot.mp4 -s options.shape=0.8`.
    Outputs not given go under OUTPUT_DIR/WORKFLOW/."""
    from vfxmocap.workflows import get_workflow

    spec = get_workflow(workflow)
    inputs = listify(parse_sets(sets or []), spec.inputs.model_json_schema())
    if spec.place_outputs is not None:
        folder = output_dir / spec.name
        for key, value in spec.place_outputs(inputs, folder).items():
            inputs.setdefault(key, value)
        folder.mkdir(parents=True, exist_ok=True)
    report(run_workflow(workflow, inputs, quiet=as_json), as_json)


@app.command()
@guarded
def transcode(
    input: Annotated[str, typer.Argument(help="Video, image sequence (%06d or *), or camera:N.")],
    output: Annotated[Path, typer.Argument(help="Output .mp4")],
    max_height: Annotated[int | None, typer.Option(help="Downscale to this height.")] = None,
    crf: Annotated[int | None, typer.Option(help="H.264 quality 0-51 (lower is better).")] = None,
    preset: Annotated[str | None, typer.Option(help="x264 preset, e.g. veryfast.")] = None,
    fps: Annotated[float | None, typer.Option(help="Frame rate of an image sequence.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-encode to H.264 MP4, keeping audio; written atomically."""
    inputs = given(
        input=input, output=output, max_height=max_height, crf=crf, preset=preset, fps=fps
    )
    report(run_workflow("transcode", inputs, quiet=as_json), as_json)


@app.command()
@guarded
def swap(
    source: Annotated[
        list[str], typer.Option("--source", "-s", help="Source face image; repeat for several.")
    ],
    target: Annotated[str, typer.Option("--target", "-t", help="Target image, video or sequence.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image or .mp4.")],
    engine: Annotated[str | None, typer.Option(help="geometric (built in) or inswapper.")] = None,
    faces: Annotated[
        str | None, typer.Option(help="all, largest, 0,2, map:0=1,1=id:3, reference.")
    ] = None,
    source_face: Annotated[
        int | None, typer.Option(help="Face index in a multi-face source.")
    ] = None,
    reference: Annotated[
        list[str] | None, typer.Option(help="Per source: the face to replace.")
    ] = None,
    mask: Annotated[
        str | None, typer.Option(help="oval, hull, or regions: skin,eyes,brows,nose,mouth.")
    ] = None,
    mouth_mask: Annotated[
        bool | None,
        typer.Option("--mouth-mask/--no-mouth-mask", help="Keep the target's open mouth."),
    ] = None,
    occlusion: Annotated[
        bool | None,
        typer.Option("--occlusion/--no-occlusion", help="Do not paint over hands/objects."),
    ] = None,
    shape: Annotated[
        float | None, typer.Option(help="Geometric engine: share of the source's face proportions.")
    ] = None,
    enhance: Annotated[
        bool | None,
        typer.Option("--enhance/--no-enhance", help="Restore the face (GFPGAN/CodeFormer)."),
    ] = None,
    blend: Annotated[str | None, typer.Option(help="multiband, poisson or feather.")] = None,
    blur: Annotated[float | None, typer.Option(help="Mask feather, in face widths.")] = None,
    padding: Annotated[float | None, typer.Option(help="Grow (+) or shrink (-) the mask.")] = None,
    opacity: Annotated[float | None, typer.Option(help="0-1.")] = None,
    color_match: Annotated[
        bool | None,
        typer.Option("--color-match/--no-color-match", help="Match the target's skin colour."),
    ] = None,
    sharpness_match: Annotated[
        bool | None,
        typer.Option(
            "--sharpness-match/--no-sharpness-match", help="Match the frame's fine detail."
        ),
    ] = None,
    smooth: Annotated[
        str | None, typer.Option(help="MIN_CUTOFF,BETA of the One Euro filter, or off.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Swap source face(s) onto a target image or video (audio, size and frame rate kept).
    Options not given take the workflow's defaults (`vfx workflows swap`)."""
    mask_options = {
        **(_mask_option(mask) if mask else {}),
        **given(blur=blur, padding=padding, mouth_mask=mouth_mask),
    }
    options = given(
        engine=engine,
        shape=shape,
        faces=faces,
        source_face=source_face,
        occlusion=occlusion,
        enhance=enhance,
        blend=blend,
        opacity=opacity,
        color_match=color_match,
        sharpness_match=sharpness_match,
        mask=mask_options,
        tracking=_smooth_option(smooth) if smooth else None,
    )
    inputs = given(
        sources=source, target=target, output=output, references=reference, options=options
    )
    report(run_workflow("swap", inputs, quiet=as_json), as_json)


@app.command()
@guarded
def live(
    workflow: Annotated[
        str, typer.Argument(help="A live stream, or the workflow it belongs to (e.g. swap, pose).")
    ],
    sets: SetsOpt = None,
    camera: Annotated[int | None, typer.Option(help="Camera index.")] = None,
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="A video played as a live feed.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Record to this .mp4 (default without a display: out/live.mp4)."
        ),
    ] = None,
    display: Annotated[bool, typer.Option(help="Show a window (needs a display).")] = True,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a workflow live on a webcam, e.g. `vfx live swap -s sources=me.jpg --camera 0`:
    a window, or a file when there is no display. Settings as in `vfx run`."""
    from vfxmocap.workflows import get_live

    if (camera is None) == (input is None):
        raise InvalidParams("give either --camera N or --input VIDEO")
    spec = get_live(workflow)
    settings = listify(parse_sets(sets or []), spec.settings.model_json_schema())
    _live_command(workflow, settings, camera, input, output, display, max_frames, as_json)


def _live_command(
    workflow: str,
    settings: dict[str, Any],
    camera: int | None,
    input: str | None,
    output: Path | None,
    display: bool,
    max_frames: int | None,
    as_json: bool,
) -> None:
    """Validate a live stream's settings, then play a camera (or a file) through it."""
    from vfxmocap.media.sources import CameraSource, open_source
    from vfxmocap.workflows import get_live

    spec = get_live(workflow)
    try:
        spec.settings.model_validate(settings)  # before a camera opens
    except ValidationError as exc:
        raise InvalidParams(f"live {workflow}: {validation_summary(exc)}") from exc
    frames = CameraSource(camera) if camera is not None else open_source(str(input))
    window = display and output is None and _has_display()
    with frames:
        target = None if window else output or Path("out/live.mp4")
        stats = _play(workflow, settings, frames, target, max_frames)
    result = {"output": str(target) if target else None, **stats.as_dict()}
    if as_json:
        print_json(result)
        return
    if target:
        out.print(literal(f"output: {target}"), soft_wrap=True)
    out.print(
        f"[dim]frames {stats.frames} · {stats.fps:.1f} fps · latency p50 "
        f"{stats.latency_p50_ms:.1f} ms · p95 {stats.latency_p95_ms:.1f} ms[/]"
    )


def _play(
    name: str,
    settings: dict[str, Any],
    frames: FrameSource,
    target: Path | None,
    max_frames: int | None,
) -> LiveStats:
    """Run the live stream into a window (no target) or a recording."""
    from vfxmocap.media.video import VideoWriter
    from vfxmocap.workflows.live import run_live

    if target is None:
        import cv2

        def show(frame: Any) -> bool:
            cv2.imshow("vfx live (q to quit)", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            return bool((cv2.waitKey(1) & 0xFF) != ord("q"))

        try:
            return run_live(name, settings, frames, show, max_frames=max_frames)
        finally:
            cv2.destroyAllWindows()
    with VideoWriter(target, fps=frames.fps) as writer:

        def record(frame: Any) -> bool:
            writer.write(frame)
            return True

        return run_live(name, settings, frames, record, max_frames=max_frames)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "darwin",
        "win32",
    )


@app.command()
@guarded
def mocap(
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Video, image or image sequence.")
    ] = None,
    camera: Annotated[int | None, typer.Option(help="Camera index (with --max-frames).")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where files go.")] = Path(
        "out/mocap"
    ),
    bvh: Annotated[
        bool | None, typer.Option("--bvh/--no-bvh", help="BVH skeleton animation.")
    ] = None,
    json_out: Annotated[
        bool | None, typer.Option("--json-out/--no-json-out", help="Keypoints JSON.")
    ] = None,
    csv: Annotated[
        bool | None, typer.Option("--csv/--no-csv", help="Keypoints CSV (wide).")
    ] = None,
    npz: Annotated[bool | None, typer.Option("--npz/--no-npz", help="Keypoints NPZ.")] = None,
    face_csv: Annotated[
        bool | None,
        typer.Option("--face-csv/--no-face-csv", help="Live Link Face CSV (ARKit shapes)."),
    ] = None,
    pose_video: Annotated[
        bool | None, typer.Option("--pose-video/--no-pose-video", help="OpenPose control video.")
    ] = None,
    matte: Annotated[
        str | None, typer.Option(help="mask, alpha (PNGs), green, blur or image.")
    ] = None,
    matte_background: Annotated[str | None, typer.Option(help="Image for --matte image.")] = None,
    preview: Annotated[
        bool | None,
        typer.Option("--preview/--no-preview", help="Input with the skeleton drawn over it."),
    ] = None,
    filter: Annotated[str | None, typer.Option(help="butterworth, oneeuro or none.")] = None,
    cutoff: Annotated[float | None, typer.Option(help="Butterworth cutoff in Hz.")] = None,
    holistic: Annotated[
        bool | None, typer.Option("--holistic/--no-holistic", help="Track hands and face too.")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    take: Annotated[
        int | None, typer.Option(help="Only take N (takes split at shot cuts, from 1).")
    ] = None,
    merge_takes: Annotated[
        bool | None,
        typer.Option("--merge-takes/--per-take", help="One set of outputs for the whole clip."),
    ] = None,
    person: Annotated[
        str | None,
        typer.Option(
            help="Whom to follow: largest, center, left, right, or N (N-th from the left)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Motion capture to BVH, keypoints, Live Link Face CSV, control video and mattes.
    Options not given take the workflow's defaults (`vfx workflows mocap`)."""
    if (camera is None) == (input is None):
        raise InvalidParams("give either --input FILE or --camera N")
    inputs = given(
        input=input if input is not None else f"camera:{camera}",
        output_dir=output_dir,
        bvh=bvh,
        json=json_out,
        csv=csv,
        npz=npz,
        face_csv=face_csv,
        pose_video=pose_video,
        matte=matte,
        matte_background=matte_background,
        preview=preview,
        holistic=holistic,
        filter=given(method=filter, cutoff_hz=cutoff),
        max_frames=max_frames,
        take=take,
        merge_takes=merge_takes,
        person=person,
    )
    report(run_workflow("mocap", inputs, quiet=as_json), as_json)


@app.command()
@guarded
def animate(
    source: Annotated[str, typer.Option("--source", "-s", help="The portrait image.")],
    driving: Annotated[
        str | None,
        typer.Option("--driving", "-d", help="Driving video, image sequence or image."),
    ] = None,
    camera: Annotated[int | None, typer.Option(help="Drive it live from this camera.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help=".mp4 (an image for a still driver); live: a file."),
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="builtin (no download) or liveportrait.")
    ] = None,
    faces: Annotated[str | None, typer.Option(help="Portrait faces: all, largest or 0,2.")] = None,
    neutral: Annotated[
        int | None, typer.Option(help="Driving frame of the neutral pose (default: first face).")
    ] = None,
    expression_scale: Annotated[
        float | None, typer.Option(help="Expression strength (0: the portrait's own).")
    ] = None,
    head_scale: Annotated[
        float | None, typer.Option(help="Head motion strength (0 keeps the portrait's pose).")
    ] = None,
    region: Annotated[str | None, typer.Option(help="all, expression, pose, lips or eyes.")] = None,
    eye_ratio: Annotated[float | None, typer.Option(help="Eye-opening retargeting factor.")] = None,
    lip_ratio: Annotated[float | None, typer.Option(help="Lip-opening retargeting factor.")] = None,
    stitching: Annotated[
        bool | None,
        typer.Option("--stitching/--no-stitching", help="Keep shoulders and background still."),
    ] = None,
    smooth: Annotated[
        bool | None, typer.Option("--smooth/--no-smooth", help="One Euro smoothing of the driver.")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    display: Annotated[bool, typer.Option(help="Live: show a window (needs a display).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Animate a portrait like a driving video (its size kept; the driver's frame rate, frames
    and audio), a still (one image) or, with --camera, live. Options not given take the
    workflow's defaults (`vfx workflows animate`)."""
    if (camera is None) == (driving is None):
        raise InvalidParams("give either --driving FILE or --camera N")
    options = given(
        expression_scale=expression_scale,
        head_scale=head_scale,
        region=region,
        eye_ratio=eye_ratio,
        lip_ratio=lip_ratio,
        stitching=stitching,
        smoothing=smooth,
    )
    setup = given(source=source, engine=engine, faces=faces, options=options)
    if camera is not None:
        if neutral:
            raise InvalidParams("--neutral needs a file driver; a camera's first face is neutral")
        _live_command("animate", setup, camera, None, output, display, max_frames, as_json)
        return
    if output is None:
        raise InvalidParams("give --output (an .mp4, or an image for a still driver)")
    inputs = given(**setup, driving=driving, output=output, neutral=neutral, max_frames=max_frames)
    report(run_workflow("animate", inputs, quiet=as_json), as_json)


@app.command("edit-face")
@guarded
def edit_face(
    source: Annotated[str, typer.Option("--source", "-s", help="The portrait image.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image.")],
    engine: Annotated[
        str | None, typer.Option(help="builtin (no download) or liveportrait.")
    ] = None,
    faces: Annotated[str | None, typer.Option(help="Portrait faces: all, largest or 0,2.")] = None,
    smile: Annotated[float | None, typer.Option(help="-1 (frown) to 1.")] = None,
    blink: Annotated[float | None, typer.Option(help="0 to 1 (closed).")] = None,
    wink_left: Annotated[float | None, typer.Option(help="0 to 1: the person's left eye.")] = None,
    wink_right: Annotated[
        float | None, typer.Option(help="0 to 1: the person's right eye.")
    ] = None,
    eyebrow: Annotated[float | None, typer.Option(help="-1 (lowered) to 1 (raised).")] = None,
    gaze_x: Annotated[float | None, typer.Option(help="-1 to 1 (to the image's right).")] = None,
    gaze_y: Annotated[float | None, typer.Option(help="-1 to 1 (down).")] = None,
    aaa: Annotated[float | None, typer.Option(help="0 to 1: mouth open.")] = None,
    eee: Annotated[float | None, typer.Option(help="0 to 1: mouth wide.")] = None,
    woo: Annotated[float | None, typer.Option(help="0 to 1: lips rounded.")] = None,
    yaw: Annotated[float | None, typer.Option(help="Degrees, -30 to 30.")] = None,
    pitch: Annotated[float | None, typer.Option(help="Degrees, -30 to 30.")] = None,
    roll: Annotated[float | None, typer.Option(help="Degrees, -30 to 30.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Edit a portrait's expression and head pose with sliders; all at 0 changes nothing."""
    edits = given(
        smile=smile,
        blink=blink,
        wink_left=wink_left,
        wink_right=wink_right,
        eyebrow=eyebrow,
        gaze_x=gaze_x,
        gaze_y=gaze_y,
        aaa=aaa,
        eee=eee,
        woo=woo,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
    )
    inputs = given(source=source, output=output, engine=engine, faces=faces, edits=edits)
    report(run_workflow("edit-face", inputs, quiet=as_json), as_json)


# Prompt options `generate` and `pose-transfer` share.
NegativeOpt = Annotated[
    str | None, typer.Option(help="What to avoid (replaces the family's default).")
]
TemplateOpt = Annotated[
    bool,
    typer.Option(
        "--template/--no-template",
        help="Word the prompt with the family's template and default negative.",
    ),
]
SegmentOpt = Annotated[int | None, typer.Option(help="Frames per segment of a chained video.")]
SeamOpt = Annotated[
    int | None, typer.Option(help="Frames segments overlap, cross-faded (default 4).")
]
QuantizeOpt = Annotated[
    str | None,
    typer.Option(help="auto: 8-bit weights where they help the model fit; off: never."),
]
ExpandOpt = Annotated[
    str | None,
    typer.Option(help="Expand the prompt first with this local text model (off by default)."),
]


@app.command()
@guarded
def generate(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Catalog name, cached Hub repo id, or folder.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .mp4 (+ .json).")],
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt", "-p", help="What to show; or a schedule: '0s: a man walks, 4s: he runs'."
        ),
    ] = None,
    prompt_schedule: Annotated[
        Path | None, typer.Option(help="Schedule file instead of --prompt: 'TIME: prompt' a line.")
    ] = None,
    negative: NegativeOpt = None,
    template: TemplateOpt = True,
    expand_prompt: ExpandOpt = None,
    image: Annotated[str | None, typer.Option(help="First frame (image-to-video).")] = None,
    last_image: Annotated[
        str | None, typer.Option(help="Last frame (Wan first-last-frame, LTX).")
    ] = None,
    video: Annotated[
        str | None,
        typer.Option(help="Control / source video (Wan VACE, AnimateDiff, LTX conditioning)."),
    ] = None,
    mask: Annotated[
        str | None, typer.Option(help="Mask video for Wan VACE (white: generate).")
    ] = None,
    reference: Annotated[
        list[str] | None, typer.Option(help="Reference image for Wan VACE (repeatable).")
    ] = None,
    frames: Annotated[
        int | None, typer.Option(help="Frames (rounded to the family's; long: chained).")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds instead of --frames.")] = None,
    segment_frames: SegmentOpt = None,
    seam_frames: SeamOpt = None,
    width: Annotated[int | None, typer.Option(help="Width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    guidance: Annotated[float | None, typer.Option(help="Guidance scale.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (the same seed, the same frames).")] = None,
    fps: Annotated[float | None, typer.Option(help="Frame rate of the MP4.")] = None,
    quantize: QuantizeOpt = None,
    plan_only: Annotated[
        bool, typer.Option("--plan-only", help="Print the memory plan and stop.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate a video with a diffusers model (Wan 2.1 / 2.2 / VACE, LTX-Video, Stable Video
    Diffusion, CogVideoX, AnimateDiff). Options not given take the model family's defaults
    (`vfx workflows generate`)."""
    if prompt_schedule is not None:
        if prompt:
            raise InvalidParams(
                "prompt_schedule: give --prompt-schedule or --prompt, not both",
                hint="Put every scene in the schedule file, or drop --prompt-schedule.",
            )
        from vfxmocap.generation.prompts import read_schedule

        prompt = read_schedule(prompt_schedule)
    inputs = given(
        model=model,
        output=output,
        prompt=prompt,
        negative=negative,
        template=None if template else False,
        expand_prompt=expand_prompt,
        image=image,
        last_image=last_image,
        video=video,
        mask=mask,
        reference=reference or None,
        frames=frames,
        duration=duration,
        segment_frames=segment_frames,
        seam_frames=seam_frames,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seed=seed,
        fps=fps,
        quantize=quantize,
        plan_only=plan_only or None,
    )
    report(run_workflow("generate", inputs, quiet=as_json), as_json)


@app.command("pose-transfer")
@guarded
def pose_transfer(
    driving: Annotated[str, typer.Option("--driving", "-d", help="The performer's video.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The character and scene.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Wan VACE or AnimateDiff + OpenPose ControlNet.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .mp4 (+ .json).")],
    reference: Annotated[str | None, typer.Option(help="The character's image (Wan VACE).")] = None,
    negative: NegativeOpt = None,
    template: TemplateOpt = True,
    expand_prompt: ExpandOpt = None,
    frames: Annotated[int | None, typer.Option(help="Frames (default: the driver's).")] = None,
    segment_frames: SegmentOpt = None,
    seam_frames: SeamOpt = None,
    width: Annotated[int | None, typer.Option(help="Width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    guidance: Annotated[float | None, typer.Option(help="Guidance scale.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (the same seed, the same frames).")] = None,
    quantize: QuantizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A character moving like the performer in --driving: our mocap draws the OpenPose
    video, a pose-conditioned model renders it at the driver's timing, with its audio."""
    inputs = given(
        driving=driving,
        prompt=prompt,
        model=model,
        output=output,
        reference=reference,
        negative=negative,
        template=None if template else False,
        expand_prompt=expand_prompt,
        frames=frames,
        segment_frames=segment_frames,
        seam_frames=seam_frames,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seed=seed,
        quantize=quantize,
    )
    report(run_workflow("pose-transfer", inputs, quiet=as_json), as_json)


def _mask_option(text: str) -> dict[str, Any]:
    if text in ("oval", "hull"):
        return {"kind": text}
    return {"kind": "regions", "regions": [r.strip() for r in text.split(",") if r.strip()]}


def _smooth_option(text: str) -> dict[str, Any]:
    if text.strip().lower() in ("off", "none", "0"):
        return {"smooth": False}
    try:
        min_cutoff, beta = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParams(
            f"bad --smooth {text!r}", hint="Use MIN_CUTOFF,BETA (e.g. 1.0,3.0) or off."
        ) from None
    return {"smooth": True, "filter": {"min_cutoff": min_cutoff, "beta": beta}}


@app.command()
@guarded
def demo(
    output_dir: Annotated[Path, typer.Option(help="Where results go.")] = Path("out"),
    as_json: JsonOpt = False,
) -> None:
    """Run every workflow on the bundled sample media and list what was written."""
    from vfxmocap.workflows import all_workflows

    results: dict[str, WorkflowResult] = {}
    for workflow in all_workflows():
        if workflow.demo is None:
            continue
        inputs = workflow.demo(output_dir / workflow.name)
        if not as_json:
            err.print(f"[bold]{workflow.name}[/]: {workflow.summary}")
        with progress_bar(enabled=not as_json) as progress:
            results[workflow.name] = workflow(inputs, progress, CancelToken())
    if as_json:
        print_json({name: result_dict(r) for name, r in results.items()})
        return
    for name, result in results.items():
        report(result, False, prefix=f"{name}.")
