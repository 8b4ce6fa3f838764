"""Image reference (style or subject): IP-Adapter for SDXL borrows the look of an image.

How the engine calls it, on its worker thread::

    reference = ReferenceAdapter(addon_settings)            # once; caches the image encoder
    image = load_reference_image(attachment_bytes)          # ReferenceImageError with a clear message
    with reference.applied(pipe, image, weight=0.6, mode="style") as extra:
        pipe(..., **extra)                                  # extra = {"ip_adapter_image": image}
    # on leaving, the adapter is unloaded: the UNet is as before and needs no reference image

The adapter's weights (``h94/IP-Adapter``, subfolder ``sdxl_models``, ``ip-adapter_sdxl.safetensors``)
and its CLIP image encoder (ViT-bigG, about 3.7 GB) are read from disk once and kept in host memory by
:class:`ReferenceAdapter`. For each job with a reference the adapter is attached with
``pipe.load_ip_adapter`` from that state dict, the encoder handed to the pipeline, and afterwards it
is detached with ``unload_ip_adapter``, because the UNet is shared with the derived image-to-image
pipelines, which would otherwise demand a reference image too. The encoder stays on the GPU between
reference jobs and moves back to host memory after ``REFERENCE_ENCODER_IDLE_S`` idle seconds
(:meth:`ReferenceAdapter.release_idle`, checked at the start of every job) and on out of memory
(:meth:`ReferenceAdapter.release`).

``mode="style"`` is InstantStyle: the scale is set on the style layers only, the second
attention of SDXL's first up block (``{"up": {"block_0": [0.0, w, 0.0]}}``).
:func:`style_scale` builds that list from the UNet's own layout: the tiny UNet's first up
block has two attentions, so there it is ``[0.0, w]``. ``mode="full"`` sets ``w`` everywhere.
Drafts batch together only with the same :func:`reference_batch_key`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from ..canvas import upload_rgb
from ..requests import REFERENCE_MODES, REFERENCE_WEIGHT_RANGE
from .settings import AddonMissing, AddonSettings

log = logging.getLogger(__name__)

MAX_REFERENCE_PIXELS = 4096 * 4096


class ReferenceImageError(ValueError):
    """The reference is not an image the engine can use, or its weight or mode is wrong."""


def load_reference_image(data: bytes) -> Image.Image:
    """Decode an uploaded reference image to RGB, or :class:`ReferenceImageError` saying why not."""
    return upload_rgb(
        data,
        max_pixels=MAX_REFERENCE_PIXELS,
        error=ReferenceImageError,
        empty="The reference image is empty.",
        too_large="The reference image is too large ({size}).",
        unreadable="The reference is not an image the bot can read (use PNG, JPEG or WebP).",
    )


def reference_batch_key(image: Image.Image | None, weight: float, mode: str) -> tuple:
    """Drafts batch together only with the same reference image (by content), weight and mode."""
    if image is None:
        return ()
    digest = hashlib.sha256(image.tobytes()).hexdigest()[:16]
    return (digest, image.size, round(float(weight), 4), mode)


def style_scale(unet, weight: float) -> dict:
    """InstantStyle's style-only scale for this UNet: ``weight`` on the second attention of up block 0, else 0."""
    attentions = len(getattr(unet.up_blocks[0], "attentions", ()))
    if attentions == 0:
        raise ReferenceImageError("This model's first up block has no attention layers: style-only is not possible.")
    layers = [0.0] * attentions
    layers[1 if attentions > 1 else 0] = float(weight)
    return {"up": {"block_0": layers}}


def ip_adapter_scales(unet) -> dict[str, float]:
    """{attention processor: its IP-Adapter scale} for the processors that have one (for tests and logs)."""
    return {
        name: float(proc.scale[0])
        for name, proc in unet.attn_processors.items()
        if hasattr(proc, "to_k_ip")
    }


class ReferenceAdapter:
    """Attaches the IP-Adapter to a pipeline for a job and takes it off again.

    Keeps the adapter's weights and the image encoder in host memory (read from disk once); the encoder
    stays on the device between jobs until it has been idle ``reference_encoder_idle_s`` seconds.
    ``clock`` is for tests (a fake clock instead of waiting)."""

    def __init__(self, settings: AddonSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self._weights: dict[str, dict[str, Any]] | None = None  # {"image_proj": {...}, "ip_adapter": {...}}
        self._image_encoder = None
        self._feature_extractor = None
        self._last_used: float | None = None  # when the last job detached (None while attached or released)
        self.resident = False  # the image encoder is on the pipelines' device (not in host memory)

    def source(self) -> str:
        """The folder (tiny or local) or hub id the adapter is loaded from."""
        if not self.settings.reference_model:
            raise AddonMissing("Image reference is off (REFERENCE_MODEL is empty).")
        tiny = self.settings.resolve_tiny(self.settings.reference_model)
        return str(tiny) if tiny is not None else self.settings.reference_model

    # ---- reading once ---------------------------------------------------------------------------

    def _file(self, relative: str) -> Path:
        """A file of the adapter's repository or folder (local only: downloads are ``python -m engine.addons``)."""
        source = self.source()
        local = Path(source).expanduser()
        if local.exists():
            path = local / relative
            if not path.is_file():
                raise FileNotFoundError(str(path))
            return path
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(source, relative, local_files_only=True))

    def _encoder_folder(self) -> str:
        sub = self.settings.reference_subfolder.strip("/")
        encoder = self.settings.reference_image_encoder.strip("/")
        return encoder if "/" in encoder or not sub else f"{sub}/{encoder}"

    def weights(self) -> dict[str, dict[str, Any]]:
        """The adapter's state dict in host memory, read from its safetensors file on first use."""
        if self._weights is None:
            sub = self.settings.reference_subfolder.strip("/")
            name = self.settings.reference_weight_name
            if not name.endswith(".safetensors"):
                raise AddonMissing(f"REFERENCE_WEIGHT_NAME={name}: only .safetensors adapters are loaded.")
            path = self._file(f"{sub}/{name}" if sub else name)
            self._weights = read_adapter_weights(path)
            log.info("IP-Adapter weights read from %s (kept in host memory)", path)
        return self._weights

    def image_encoder(self, dtype):
        """The CLIP image encoder, loaded once (in ``dtype``) and kept; wherever it was left."""
        if self._image_encoder is None:
            from transformers import CLIPVisionModelWithProjection

            folder = self._encoder_folder()
            config = self._file(f"{folder}/config.json").parent
            self._image_encoder = CLIPVisionModelWithProjection.from_pretrained(
                config, dtype=dtype, local_files_only=True, use_safetensors=True
            ).eval()
            log.info("IP-Adapter image encoder read from %s (kept in host memory when idle)", config)
        return self._image_encoder

    # ---- attaching -------------------------------------------------------------------------------

    @staticmethod
    def is_attached(pipe) -> bool:
        return getattr(pipe.unet, "encoder_hid_proj", None) is not None and (
            # the attribute, as the UNet's forward reads it (unload sets it, not the dict entry)
            getattr(pipe.unet.config, "encoder_hid_dim_type", None) == "ip_image_proj"
        )

    def attach(self, pipe) -> None:
        """Load the adapter into ``pipe`` (its UNet and image encoder); a no-op when it is there."""
        if self.is_attached(pipe):
            return
        source = self.source()
        try:
            weights = self.weights()
            encoder = self.image_encoder(pipe.unet.dtype).to(pipe._execution_device)
            self._last_used, self.resident = None, True  # in use: not idle
            pipe.register_modules(image_encoder=encoder)
            if self._feature_extractor is not None and getattr(pipe, "feature_extractor", None) is None:
                pipe.register_modules(feature_extractor=self._feature_extractor)
            pipe.load_ip_adapter(
                {part: dict(tensors) for part, tensors in weights.items()},  # diffusers may pop from it
                subfolder=self.settings.reference_subfolder,
                weight_name=self.settings.reference_weight_name,
                image_encoder_folder=None,  # registered above: never read again
            )
        except OSError as exc:
            self._clean_up_failed_load(pipe)
            raise AddonMissing(
                f"IP-Adapter {source} is not downloaded: run `python -m engine.addons download reference` "
                f"({exc.__class__.__name__})."
            ) from None
        except (RuntimeError, ValueError, KeyError) as exc:  # shapes or layers of another architecture
            self._clean_up_failed_load(pipe)
            raise ReferenceImageError(
                f"The image reference adapter does not fit this model ({exc.__class__.__name__}): "
                "use it with SDXL-shaped UNets (SDXL, Turbo), not the refiner."
            ) from None
        self._feature_extractor = pipe.feature_extractor
        log.info("IP-Adapter attached from %s", source)

    def _clean_up_failed_load(self, pipe) -> None:
        """After a failed load_ip_adapter: the UNet plain again, the image encoder kept here (not in the pipeline)."""
        with contextlib.suppress(Exception):
            pipe.unload_ip_adapter()
        if getattr(pipe, "image_encoder", None) is not None:
            pipe.register_modules(image_encoder=None)
        self._last_used = self.clock()

    def set_weight(self, pipe, weight: float, mode: str = "full") -> None:
        """Scale of the reference: on every cross-attention (full) or on the style layers only (style)."""
        low, high = REFERENCE_WEIGHT_RANGE
        if mode not in REFERENCE_MODES:
            raise ReferenceImageError(f"Unknown reference mode {mode!r}: use {' or '.join(REFERENCE_MODES)}.")
        if not low <= float(weight) <= high:
            raise ReferenceImageError(f"reference_weight {weight} is out of range ({low} to {high}).")
        pipe.set_ip_adapter_scale(style_scale(pipe.unet, weight) if mode == "style" else float(weight))

    def detach(self, pipe) -> None:
        """Unload the adapter from ``pipe``; the UNet's attention processors are the plain ones again."""
        if not self.is_attached(pipe):
            return
        pipe.unload_ip_adapter()  # drops the pipeline's image encoder; this object keeps it
        self._last_used = self.clock()

    @contextlib.contextmanager
    def applied(
        self, pipe, image: Image.Image, *, weight: float, mode: str = "full"
    ) -> Iterator[dict]:
        """The adapter on ``pipe`` for one job; yields the keyword arguments for the pipeline call."""
        try:
            self.attach(pipe)
            self.set_weight(pipe, weight, mode)
            yield {"ip_adapter_image": image}
        finally:
            self.detach(pipe)

    # ---- memory ----------------------------------------------------------------------------------

    def encoder_device(self) -> str | None:
        """Where the image encoder is now ("cpu", "cuda:0"), or None before the first reference job."""
        if self._image_encoder is None:
            return None
        return str(next(self._image_encoder.parameters()).device)

    def release_idle(self, now: float | None = None) -> bool:
        """Move the image encoder to host memory if no job used it for ``reference_encoder_idle_s``; True if moved."""
        if self._last_used is None:
            return False
        now = self.clock() if now is None else now
        if now - self._last_used < self.settings.reference_encoder_idle_s:
            return False
        return self.release()

    def release(self) -> bool:
        """The image encoder to host memory now (idle, or out of memory); True if it was resident."""
        self._last_used = None
        if not self.resident or self._image_encoder is None:
            return False
        self.resident = False
        self._image_encoder.to("cpu")
        log.info("IP-Adapter image encoder moved to host memory")
        return True


def read_adapter_weights(path: Path) -> dict[str, dict[str, Any]]:
    """An IP-Adapter safetensors file as ``load_ip_adapter`` takes it: {"image_proj": {...}, "ip_adapter": {...}}."""
    from safetensors import safe_open

    state: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():
            part, _, rest = key.partition(".")
            if part in state:
                state[part][rest] = f.get_tensor(key)
    return state


def _hub_patterns(settings: AddonSettings) -> list[str]:
    sub = settings.reference_subfolder.strip("/")
    encoder = settings.reference_image_encoder.strip("/")
    encoder_dir = encoder if "/" in encoder else f"{sub}/{encoder}" if sub else encoder
    weight = f"{sub}/{settings.reference_weight_name}" if sub else settings.reference_weight_name
    return [weight, f"{encoder_dir}/config.json", f"{encoder_dir}/model.safetensors"]


def missing(settings: AddonSettings) -> str | None:
    """One line when the image reference is configured but its files are not on disk; None otherwise."""
    source = settings.reference_model
    if not source:
        return None
    tiny = settings.resolve_tiny(source)
    local = tiny if tiny is not None else Path(source).expanduser()
    if local.exists():
        absent = [p for p in _hub_patterns(settings) if not (local / p).is_file()]
        if absent:
            return f"REFERENCE_MODEL={source} lacks {absent[0]}: image reference options are hidden."
        return None
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(source, allow_patterns=_hub_patterns(settings), local_files_only=True))
    except Exception:
        folder = None
    if folder is None or any(not (folder / p).is_file() for p in _hub_patterns(settings)):
        return (
            f"Image reference ({source}) is not downloaded: run `python -m engine.addons download reference`; "
            "its options are hidden until then."
        )
    return None


def download(settings: AddonSettings) -> Path | None:
    """Fetch the IP-Adapter weights and its image encoder (safetensors only, with progress bars)."""
    source = settings.reference_model
    if not source or settings.resolve_tiny(source) is not None or Path(source).expanduser().exists():
        return None
    from huggingface_hub import snapshot_download

    print(f"fetching image reference: {source} {', '.join(_hub_patterns(settings))}", flush=True)
    try:
        return Path(snapshot_download(source, allow_patterns=_hub_patterns(settings)))
    except Exception as exc:
        raise AddonMissing(
            f"Image reference {source} could not be downloaded: {exc.__class__.__name__}: {exc}"
        ) from None
