"""Optional run logging of finals to Weights & Biases (off by default).

An owner turns it on with ``WANDB_PROJECT`` (and ``pip install -e '.[wandb]'`` plus ``wandb login``
or ``WANDB_API_KEY``). Each delivered final is logged with its image, prompt, negative prompt,
seed, model, steps, size and time; user ids are not sent. A missing package or login gives one
warning line at start and the bot runs without logging; a failure later gives one warning line
and logging stops for the rest of the run. Nothing here ever raises into the job service.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from core.history import JobRecord

log = logging.getLogger(__name__)


class RunLog:
    """Where finals are logged; this one logs nothing (the default)."""

    enabled = False

    async def log_final(self, job: JobRecord, png: bytes, *, steps: int | None, seconds: float | None) -> None:
        """Log one delivered final. Never raises."""

    def close(self) -> None:
        """Finish the run (blocking: call it in a thread)."""


class WandbRunLog(RunLog):
    """Finals as rows of one Weights & Biases run."""

    enabled = True

    def __init__(self, run: Any, wandb: ModuleType) -> None:
        self._run = run
        self._wandb = wandb
        self._broken = False

    async def log_final(self, job: JobRecord, png: bytes, *, steps: int | None, seconds: float | None) -> None:
        if self._broken:
            return
        try:
            await asyncio.to_thread(self._log, job, png, steps, seconds)
        except Exception as e:
            self._broken = True
            log.warning(
                "Weights & Biases logging failed (%s: %s); finals are not logged for the rest of this run",
                type(e).__name__,
                e,
            )

    def _log(self, job: JobRecord, png: bytes, steps: int | None, seconds: float | None) -> None:
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            picture = self._wandb.Image(image.convert("RGB"), caption=job.prompt[:500])
        self._run.log(
            {
                "final": picture,
                "job_id": job.id,
                "mode": str(job.mode),
                "prompt": job.prompt,
                "negative_prompt": job.negative_prompt,
                "seed": job.seed,
                "model": job.model,
                "steps": steps,
                "width": job.width,
                "height": job.height,
                "seconds": seconds,
            }
        )

    def close(self) -> None:
        try:
            self._run.finish()
        except Exception as e:
            log.warning("Weights & Biases run did not finish cleanly: %s", e)


def open_run_log(project: str | None, *, load: Callable[[str], ModuleType] = importlib.import_module) -> RunLog:
    """A run log for ``project`` (``WANDB_PROJECT``), or one that logs nothing. Blocking: call it in a thread.

    Never raises: a missing package or login is one warning line, and the bot runs without logging.
    """
    if not project:
        return RunLog()
    try:
        wandb = load("wandb")
    except ImportError:
        log.warning(
            "WANDB_PROJECT is set but the wandb package is missing (pip install -e '.[wandb]'); finals are not logged"
        )
        return RunLog()
    try:
        run = wandb.init(project=project, job_type="finals", config={"source": "imagine-bot"})
    except Exception as e:
        first_line = (str(e).splitlines() or [""])[0][:200]
        log.warning(
            "WANDB_PROJECT is set but no Weights & Biases run could start (%s: %s); run `wandb login` or set "
            "WANDB_API_KEY; finals are not logged",
            type(e).__name__,
            first_line,
        )
        return RunLog()
    if run is None:  # WANDB_MODE=disabled may give no run object
        log.warning("WANDB_PROJECT is set but Weights & Biases is disabled (WANDB_MODE); finals are not logged")
        return RunLog()
    log.info("logging finals to Weights & Biases project %s", project)
    return WandbRunLog(run, wandb)
