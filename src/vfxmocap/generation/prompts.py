"""Prompts: each family's template and default negative, prompt schedules for multi-scene
clips, and optional prompt expansion by a small local text model.

Templates live in `prompts.toml` beside this module (one table per family); a user's file
(VFX_PROMPT_TEMPLATES) replaces whole tables. A schedule is `0s: a man walks, 4s: he starts
running` (or the same, one entry a line, in a file). Expansion runs a causal language model
from the model store through transformers, greedy and bounded, on the CPU (a 0.5B model
takes seconds there, and the accelerator's memory stays the video model's); torch and
transformers are imported only when it is asked for.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import InvalidParams, ModelMissing
from vfxmocap.core.log import get_logger

log = get_logger("generation.prompts")

BUILTIN = Path(__file__).with_name("prompts.toml")
PLACE = "{prompt}"


@dataclass(frozen=True)
class Template:
    """How a family's prompts are worded: `template` wraps the user's prompt; `negative` is
    used when the user gives none."""

    template: str = PLACE
    negative: str = ""
    source: str = str(BUILTIN)


@dataclass(frozen=True)
class Worded:
    """A prompt as the pipeline gets it, and what it was made from."""

    prompt: str
    negative: str
    template: str | None  # the template applied, None when off or the family has none
    default_negative: bool  # the negative is the family's default, not the user's


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells one version of a file from the next (None when it cannot be read: reading
    it says why)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


@lru_cache(maxsize=8)  # a schedule words every scene: the files are read once per version
def _read_templates(path: Path, field: str, stamp: tuple[int, int] | None) -> dict[str, Template]:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidParams(
            f"{field}: the prompt templates {path} cannot be read: {exc}",
            hint="Fix the TOML file (one [family] table with `template` and `negative`).",
        ) from exc
    found: dict[str, Template] = {}
    for family, table in data.items():
        if table == {}:  # a family that takes no text (Stable Video Diffusion)
            continue
        template = table.get("template", PLACE) if isinstance(table, dict) else None
        negative = table.get("negative", "") if isinstance(table, dict) else None
        if (
            not isinstance(template, str)
            or not isinstance(negative, str)
            or (PLACE not in template)
        ):
            raise InvalidParams(
                f"{field}: [{family}] in {path} needs a `template` string containing {PLACE} "
                "and a `negative` string",
                hint=f'Write e.g. [{family}] template = "{PLACE}, cinematic" negative = "blurry".',
            )
        found[family] = Template(template, negative, str(path))
    return found


def _templates(extra: Path | None) -> dict[str, Template]:
    found = dict(_read_templates(BUILTIN, "templates", _stamp(BUILTIN)))  # a copy: cached
    if extra is not None:
        found.update(_read_templates(extra, "VFX_PROMPT_TEMPLATES", _stamp(extra)))
    return found


def template_for(family: str) -> Template | None:
    """The family's template (the user's file first), None for a family that takes no text."""
    return _templates(get_settings().prompt_templates).get(family)


def word(family: str, prompt: str, negative: str, *, use_template: bool = True) -> Worded:
    """The final prompt and negative: the family's template around a non-empty prompt; the
    user's negative, else the family's default. `use_template=False` uses neither."""
    template = template_for(family) if use_template else None
    if template is None:
        return Worded(prompt, negative, None, False)
    final = template.template.replace(PLACE, prompt.strip()) if prompt.strip() else prompt
    if negative.strip():
        return Worded(final, negative, template.template, False)
    return Worded(final, template.negative, template.template, bool(template.negative))


# --- schedules -----------------------------------------------------------------------

# An entry's time: `4s:` / `4.5 s :` at the start, after a comma, a semicolon or a newline.
_TIME = re.compile(r"(?:^|[,;\n])\s*(\d+(?:\.\d+)?)\s*s\s*:", re.IGNORECASE)
_LOOKS_TIMED = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*s\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Scene:
    """One entry of a schedule: from `at_s` seconds on, `prompt`."""

    at_s: float
    prompt: str


def _uncommented(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def is_schedule(text: str) -> bool:
    """Whether a prompt is written as a schedule (it starts with a time: `0s: ...`)."""
    return bool(_LOOKS_TIMED.match(_uncommented(text)))


def parse_schedule(text: str, field: str = "prompt") -> list[Scene]:
    """`0s: a man walks, 4s: he starts running` as scenes; InvalidParams naming `field` for
    a schedule that is malformed, does not start at 0s or whose times do not increase."""
    text = _uncommented(text).strip()
    hint = 'Write the schedule as "0s: a man walks, 4s: he starts running".'
    marks = list(_TIME.finditer(text))
    if not marks or marks[0].start() != 0:
        raise InvalidParams(
            f"{field}: a prompt schedule starts with a time (`0s: ...`); got {text[:60]!r}",
            hint=hint,
        )
    scenes = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        prompt = text[mark.end() : end].strip().strip(",;").strip()
        at = float(mark.group(1))
        if not prompt:
            raise InvalidParams(
                f"{field}: the schedule's entry at {at:g}s has no prompt", hint=hint
            )
        scenes.append(Scene(at, prompt))
    if scenes[0].at_s != 0:
        raise InvalidParams(
            f"{field}: the schedule starts at {scenes[0].at_s:g}s; it must start at 0s",
            hint="Begin the schedule with `0s: ...` (what the clip shows from its start).",
        )
    for before, after in pairwise(scenes):
        if after.at_s <= before.at_s:
            raise InvalidParams(
                f"{field}: the schedule's times must increase: {after.at_s:g}s comes after "
                f"{before.at_s:g}s",
                hint="List the entries in time order, each at a later time.",
            )
    return scenes


def read_schedule(path: Path) -> str:
    """A schedule file's text, for --prompt: the same `TIME: prompt` entries, one a line
    (`#` starts a comment line). The API takes the schedule in `prompt` itself."""
    try:
        text = _uncommented(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParams(
            f"prompt_schedule: {path} cannot be read: {exc}",
            hint="Give a UTF-8 text file with one `TIME: prompt` entry a line.",
        ) from exc
    parse_schedule(text, "prompt_schedule")  # a malformed file is named as the file
    return text


def scene_frames(scenes: list[Scene], fps: float, total: int, field: str) -> list[int]:
    """Each scene's first frame at `fps`; InvalidParams for a time at or past the clip's
    end, or two times within one frame of each other."""
    starts = [round(scene.at_s * fps) for scene in scenes]
    duration = total / fps
    for scene, start in zip(scenes, starts, strict=True):
        if start >= total:
            raise InvalidParams(
                f"{field}: the schedule's entry at {scene.at_s:g}s is beyond the clip's "
                f"{duration:g}s ({total} frames at {fps:g} fps)",
                hint="Give a longer --duration or --frames, or an earlier time.",
            )
    for (a, first), (b, second) in pairwise(zip(scenes, starts, strict=True)):
        if second <= first:
            raise InvalidParams(
                f"{field}: the schedule's entries at {a.at_s:g}s and {b.at_s:g}s fall on the "
                f"same frame at {fps:g} fps",
                hint="Space the entries at least one frame apart.",
            )
    return starts


# --- expansion -----------------------------------------------------------------------

EXPAND_NEW_TOKENS = 120  # a paragraph: what a video model's text encoder reads usefully
EXPAND_MIN_TOKENS = 8  # a model that stops at once has expanded nothing
EXPAND_MAX_CHARS = 600
INSTRUCTION = (
    "You expand short prompts for a text-to-video model into one vivid paragraph: the "
    "subject, its motion, the setting, the lighting and the camera. Keep what the prompt "
    "says; add no new subjects; answer with the paragraph only."
)


def text_model_folder(model: str) -> Path:
    """A transformers causal language model's folder: a catalog name (the store's folder or
    its repo in the local Hugging Face cache), a folder, or a cached Hub repo id."""
    from vfxmocap.generation.loader import local_folder
    from vfxmocap.models.store import HUB, ModelStore

    store = ModelStore()
    found: Path | None
    if model in store.catalog.names():
        spec = store.catalog.get(model)
        found = store.directory(spec)
        if not (found / "config.json").is_file() and spec.source.repo:
            found = _cached(spec.source.repo, spec.source.revision, f"{model!r} ({found})")
    else:
        try:
            found = local_folder(model)
        except ModelMissing as exc:
            raise _not_downloaded(model.removeprefix(HUB), repr(model)) from exc
    if found is None:
        raise ModelMissing(
            f"expand_prompt: {model!r} is neither a catalog model, a folder, nor a Hub repo id",
            hint="Give a small instruct model (e.g. the catalog's qwen2.5-0.5b-instruct, "
            "after `vfx models pull`), or a transformers folder.",
        )
    if not (found / "config.json").is_file():
        raise ModelMissing(
            f"expand_prompt: {found} has no config.json: not a transformers model folder",
            hint="Place the model's files (config.json, weights, tokenizer) in that folder.",
        )
    return found


def _cached(repo: str, revision: str | None, named: str) -> Path:
    from vfxmocap.generation.loader import hub_snapshot

    try:
        return hub_snapshot(repo, revision)
    except ModelMissing as exc:
        raise _not_downloaded(repo, named) from exc


def _not_downloaded(repo: str, named: str) -> ModelMissing:
    return ModelMissing(
        f"expand_prompt: {named} is not downloaded: {repo} is not in the local Hugging "
        "Face cache (vfxmocap never downloads at run time)",
        hint=f"Fetch it once (`vfx models pull` for a catalog model, or `hf download "
        f"{repo}`), or give a transformers folder.",
    )


@dataclass(frozen=True)
class Expanded:
    model: str
    prompts: dict[str, str]  # the prompt as given -> as expanded


def expand(prompts: list[str], model: str) -> Expanded:
    """Each distinct prompt rewritten by the text model (greedy: the same prompt, the same
    text), cut to a paragraph; a model that answers nothing leaves the prompt as it was."""
    folder = text_model_folder(model)
    tokenizer, lm = _load_text_model(folder, model)
    done: dict[str, str] = {}
    for prompt in dict.fromkeys(p for p in prompts if p.strip()):
        text = _generate_text(tokenizer, lm, prompt)
        if not text:
            log.warning("expand_prompt: %s answered nothing for %r; keeping it", model, prompt)
        done[prompt] = text or prompt
    return Expanded(model, done)


def _load_text_model(folder: Path, model: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        lm: Any = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32
        )
        lm.eval()
    except (OSError, ValueError, KeyError) as exc:
        raise ModelMissing(
            f"expand_prompt: {model!r} ({folder}) cannot be loaded as a causal language "
            f"model: {exc}",
            hint="Give a transformers text-generation model folder (config, weights, "
            "tokenizer), e.g. a small instruct model.",
        ) from exc
    return tokenizer, lm


def _generate_text(tokenizer: Any, lm: Any, prompt: str) -> str:
    import torch

    if getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": prompt},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = f"{INSTRUCTION}\n\nPrompt: {prompt}\nExpanded prompt:"
    encoded = tokenizer(text, return_tensors="pt")
    stop = tokenizer.eos_token_id
    with torch.inference_mode():
        out = lm.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded.get("attention_mask"),
            max_new_tokens=EXPAND_NEW_TOKENS,
            min_new_tokens=EXPAND_MIN_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop,
        )
    new = out[0, encoded["input_ids"].shape[1] :]
    answer = tokenizer.decode(new, skip_special_tokens=True)
    return _bounded(answer)


def _bounded(text: str) -> str:
    """The first paragraph, at most EXPAND_MAX_CHARS, cut at a word."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    if len(paragraph) <= EXPAND_MAX_CHARS:
        return paragraph
    return paragraph[:EXPAND_MAX_CHARS].rsplit(" ", 1)[0]
