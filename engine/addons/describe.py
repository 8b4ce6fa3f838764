"""Describe: three or four prompt suggestions for an uploaded image, from an image-captioning model (BLIP).

How the engine calls it, on its worker thread::

    describer = Describer(addon_settings, device="cuda")   # once; loads the model at first use
    suggestions = describer.describe(image_bytes)           # 3-4 distinct prompts, or DescribeError

The model (``DESCRIBE_MODEL``, default ``Salesforce/blip-image-captioning-large``) is loaded
with ``BlipProcessor.from_pretrained`` and ``BlipForConditionalGeneration.from_pretrained``
(safetensors only). Suggestions come from one beam search that returns several sequences,
topped up if needed with captions that start from prefixes ("a painting of", ...); each is
cleaned up (BLIP's "arafed" and "there is" openings, repeated words, tokenizer spacing) and
duplicates are dropped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..canvas import upload_rgb
from .settings import AddonMissing, AddonSettings

if TYPE_CHECKING:
    from transformers import BlipForConditionalGeneration, BlipProcessor

log = logging.getLogger(__name__)

MIN_SUGGESTIONS = 3
MAX_SUGGESTIONS = 4
PREFIXES = ("a painting of", "a photograph of", "an illustration of", "a close-up of")
MAX_IMAGE_PIXELS = 8192 * 8192
_DOWNLOAD_PATTERNS = ["*.json", "*.txt", "model.safetensors"]
_OPENINGS = re.compile(r"^(?:there (?:is|are) |this is |an? image of |an? picture of )", re.IGNORECASE)
_ARTIFACTS = re.compile(r"\b(?:araf\w*|arafe\w*|araff\w*)\s*", re.IGNORECASE)


class DescribeError(ValueError):
    """The image cannot be described (not an image, or the model found nothing to say)."""


def load_image(data: bytes) -> Image.Image:
    """Decode uploaded bytes to an RGB image, or :class:`DescribeError` saying why not."""
    return upload_rgb(
        data,
        max_pixels=MAX_IMAGE_PIXELS,
        error=DescribeError,
        empty="The file is empty: attach an image to describe.",
        too_large="The image is too large to describe ({size}).",
        unreadable="That file is not an image the bot can read (use PNG, JPEG or WebP).",
    )


def clean_caption(text: str) -> str:
    """A caption made into a prompt: BLIP's artifacts and filler openings gone, words not repeated."""
    text = " ".join(text.replace("\n", " ").split())
    text = re.sub(r"\s*-\s*", "-", text)  # "close - up" -> "close-up"
    text = re.sub(r"\s+([,.;:!?'])", r"\1", text)
    text = _ARTIFACTS.sub("", text)
    text = _OPENINGS.sub("", text.strip())
    words: list[str] = []
    for word in text.split():
        if not words or word.lower() != words[-1].lower():
            words.append(word)
    return " ".join(words).strip(" .,;:")


class Describer:
    """Holds the captioning model (loaded once) and turns images into prompt suggestions."""

    def __init__(self, settings: AddonSettings, device: str = "cpu"):
        self.settings = settings
        self.device = device
        self._processor: BlipProcessor | None = None
        self._model: BlipForConditionalGeneration | None = None

    def source(self) -> str:
        source = self.settings.describe_model
        if not source:
            raise AddonMissing("Describe is off (DESCRIBE_MODEL is empty).")
        tiny = self.settings.resolve_tiny(source)
        if tiny is not None:
            return str(tiny)
        local = Path(source).expanduser()
        return str(local) if local.exists() else source

    def load(self) -> tuple[BlipProcessor, BlipForConditionalGeneration]:
        """(processor, model), loaded once through from_pretrained (local files only, safetensors)."""
        if self._processor is not None and self._model is not None:
            return self._processor, self._model
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        source = self.source()
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        try:
            processor = BlipProcessor.from_pretrained(source, local_files_only=True)
            model = BlipForConditionalGeneration.from_pretrained(
                source, use_safetensors=True, local_files_only=True, dtype=dtype
            )
        except OSError as exc:
            raise AddonMissing(
                f"Describe model {source} is not downloaded: run `python -m engine.addons download describe` "
                f"({exc.__class__.__name__})."
            ) from None
        # transformers wraps PreTrainedModel.to with functools.wraps, which its types do not bind to the instance.
        model.to(torch.device(self.device))  # type: ignore[arg-type]
        model.eval()
        self._processor, self._model = processor, model
        log.info("describe model loaded from %s", source)
        return processor, model

    def _generate(self, image: Image.Image, prefix: str | None, count: int) -> list[str]:
        import torch

        processor, model = self.load()
        inputs = processor(images=image, text=prefix, return_tensors="pt") if prefix else processor(
            images=image, return_tensors="pt"
        )
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                num_beams=max(count, 2),
                num_return_sequences=count,
                max_new_tokens=30,
                min_new_tokens=3,
                no_repeat_ngram_size=3,
                repetition_penalty=1.2,
            )
        return processor.batch_decode(output, skip_special_tokens=True)

    def describe(self, data: bytes | Image.Image, count: int = MAX_SUGGESTIONS) -> list[str]:
        """``count`` (3 or 4) distinct prompt suggestions for the image; DescribeError if it is unreadable."""
        if not MIN_SUGGESTIONS <= count <= MAX_SUGGESTIONS:
            raise DescribeError(f"Ask for {MIN_SUGGESTIONS} to {MAX_SUGGESTIONS} suggestions, not {count}.")
        image = data.convert("RGB") if isinstance(data, Image.Image) else load_image(data)
        suggestions: list[str] = []
        seen: set[str] = set()

        def take(captions: list[str]) -> None:
            for caption in captions:
                prompt = clean_caption(caption)
                key = prompt.lower()
                if len(prompt) >= 3 and key not in seen and len(suggestions) < count:
                    seen.add(key)
                    suggestions.append(prompt)

        take(self._generate(image, None, count * 2))
        for prefix in PREFIXES:
            if len(suggestions) >= count:
                break
            take(self._generate(image, prefix, 2))
        if len(suggestions) < MIN_SUGGESTIONS:
            raise DescribeError("The model found too little to say about this image; try another one.")
        return suggestions


def missing(settings: AddonSettings) -> str | None:
    """One line when describe is configured but its model is not on disk; None otherwise."""
    source = settings.describe_model
    if not source:
        return None
    tiny = settings.resolve_tiny(source)
    local = tiny if tiny is not None else Path(source).expanduser()
    if local.exists():
        if not (local / "config.json").is_file() or not (local / "model.safetensors").is_file():
            return f"DESCRIBE_MODEL={source} has no config.json and model.safetensors: /describe is hidden."
        return None
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(source, allow_patterns=_DOWNLOAD_PATTERNS, local_files_only=True))
        if (folder / "model.safetensors").is_file():
            return None
    except Exception:
        pass
    return (
        f"Describe model {source} is not downloaded: run `python -m engine.addons download describe`; "
        "/describe is hidden."
    )


def download(settings: AddonSettings) -> Path | None:
    """Fetch the captioning model: configs, tokenizer and model.safetensors only, with progress bars."""
    source = settings.describe_model
    if not source or settings.resolve_tiny(source) is not None or Path(source).expanduser().exists():
        return None
    from huggingface_hub import snapshot_download

    print(f"fetching describe model: {source}", flush=True)
    try:
        return Path(snapshot_download(source, allow_patterns=_DOWNLOAD_PATTERNS))
    except Exception as exc:
        raise AddonMissing(
            f"Describe model {source} could not be downloaded: {exc.__class__.__name__}: {exc}"
        ) from None
