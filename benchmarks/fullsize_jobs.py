"""The jobs of ``benchmarks.fullsize`` and what makes a row ok: the request of each row, the checks of its
images (count, size, PNG, not flat) and of what the engine did (every module in the asked dtype, the Kohya LoRA
in the UNet and both text encoders and changing the picture, the ESRGAN model and not Lanczos enlarging)."""

from __future__ import annotations

from typing import Any

LORA_NAME = "kohya-sdxl"


def source_image(size: int) -> bytes:
    """A photo-like test picture to upscale: smooth colour fields with fine noise, as PNG."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 80 + 128
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def request_for(row: str, size: int, ssd1b_steps: int, sdxl_steps: int):
    from engine.requests import DraftRequest, FinalRequest, UpscaleRequest

    prompt = "a lighthouse on a cliff at dusk, oil painting, warm light"
    if row == "turbo":
        return DraftRequest(prompt, 1, width=size, height=size, count=1)
    if row == "lora":
        return DraftRequest(prompt, 1, width=size, height=size, count=1, loras=((LORA_NAME, 0.8),))
    if row == "ssd-1b":
        return FinalRequest(prompt, 2, width=size, height=size, model="ssd-1b", steps=ssd1b_steps)
    if row == "sdxl":
        return FinalRequest(prompt, 3, width=size, height=size, model="sdxl", steps=sdxl_steps)
    if row == "upscale":
        return UpscaleRequest(image=source_image(size), mode="subtle")
    raise ValueError(f"unknown row {row!r}")


def check_images(row: str, result, size: int) -> str:
    """What is wrong with a row's images ("" when nothing): count, PNG, size, not one flat colour."""
    import io

    import numpy as np
    from PIL import Image

    want = size * 2 if row == "upscale" else size
    if len(result.images) != 1:
        return f"{len(result.images)} images, expected 1"
    with Image.open(io.BytesIO(result.images[0].png)) as img:
        if img.format != "PNG" or img.size != (want, want):
            return f"got a {img.format} of {img.size}, expected a {want} px PNG"
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    if float(pixels.std()) < 1.0:
        return "the image is one flat colour"
    return ""


def check_engine(row: str, engine, dtype: str, out: Any, result, plain) -> str:
    """What the engine did wrong beyond the images ("" when nothing): modules not in ``dtype``, a LoRA that
    did not reach every component or changed nothing, Lanczos standing in for the ESRGAN."""
    import io

    import numpy as np
    from PIL import Image

    loaded = engine.registry._loaded.values()
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for m in loaded for pipe in (m.text2img, m.img2img)
                     if pipe is not None for comp in ("unet", "vae", "text_encoder", "text_encoder_2")
                     if getattr(pipe, comp, None) is not None for p in getattr(pipe, comp).parameters()})
    if dtypes and dtypes != [dtype]:
        return f"modules in {', '.join(dtypes)}, expected {dtype}"
    if row == "lora":
        pipe = engine.registry._loaded["turbo"].text2img
        adapters = {comp: len(names) for comp, names in pipe.get_list_adapters().items() if names}
        out.note += f"; LoRA layers in {', '.join(sorted(adapters))}"
        if set(adapters) != {"unet", "text_encoder", "text_encoder_2"}:
            return f"the Kohya LoRA reached {sorted(adapters)} only, not the UNet and both text encoders"
        images = [np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
                  for png in (plain.images[0].png, result.images[0].png)]
        difference = float(np.abs(images[0] - images[1]).mean())
        out.note += f"; mean pixel change {difference:.1f}"
        if difference == 0.0:
            return "the LoRA draft is pixel-identical to the plain one"
    if row == "upscale":
        name = engine.recipes.upscaler().name()
        out.note = f"{name}, 2x"
        if name == "Lanczos":
            return "Lanczos stood in: the ESRGAN model was not loaded"
    return ""
