"""Image files: PNG with the generation parameters (the ``parameters`` text chunk)."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

SAMPLERS = {"turbo": "Euler a", "ssd-1b": "Euler", "sdxl": "Euler"}
MODEL_NAMES = {"turbo": "sdxl-turbo", "ssd-1b": "SSD-1B", "sdxl": "sdxl-base-1.0+refiner"}


def parameters_text(
    *,
    prompt: str,
    negative_prompt: str,
    steps: int,
    guidance: float,
    seed: int,
    width: int,
    height: int,
    model: str,
    strength: float | None = None,
) -> str:
    """The ``parameters`` text that other Stable Diffusion tools (A1111, Civitai...) read."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    fields = [
        f"Steps: {steps}",
        f"Sampler: {SAMPLERS.get(model, 'Euler')}",
        f"CFG scale: {guidance:g}",
        f"Seed: {seed}",
        f"Size: {width}x{height}",
        f"Model: {MODEL_NAMES.get(model, model)}",
    ]
    if strength is not None:
        fields.append(f"Denoising strength: {strength:g}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def encode_png(image: Image.Image, parameters: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=4)
    return buf.getvalue()


def encode_images(request, images: list[Image.Image], steps: int, guidance: float) -> tuple:
    """The ``GeneratedImage`` of each PIL image of ``request`` (one per seed): PNG with its parameters.

    Shared by the local worker and the cluster's replicas, so both write the same files.
    """
    from .requests import GeneratedImage

    strength = request.strength if request.init is not None else None
    generated = []
    for seed, image in zip(request.seeds, images, strict=True):
        text = parameters_text(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            steps=steps,
            guidance=guidance,
            seed=seed,
            width=image.width,
            height=image.height,
            model=request.model,
            strength=strength,
        )
        generated.append(GeneratedImage(encode_png(image, text), seed, image.width, image.height))
    return tuple(generated)


def read_parameters(png: bytes) -> str | None:
    with Image.open(io.BytesIO(png)) as img:
        return img.info.get("parameters")
