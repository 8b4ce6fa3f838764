"""How long the local engine's jobs take: units of work per request, seconds per unit learned as jobs finish."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .requests import DescribeRequest, DraftRequest, Request, UpscaleRequest

if TYPE_CHECKING:
    from .recipes import Recipes


class RunRates:
    """Seconds per unit of work of each kind of job (see :meth:`units`), a moving average."""

    def __init__(self) -> None:
        self.rate: dict[str, float] = {}

    def guess(self, on_gpu: bool) -> None:
        """The starting rates before any job has finished."""
        self.rate = {"draft": 0.05 if on_gpu else 0.4, "final": 0.08 if on_gpu else 0.6}

    @staticmethod
    def units(request: Request, recipes: Recipes | None) -> float:
        if isinstance(request, UpscaleRequest):
            return 4.0 if request.mode == "creative" else 0.5
        if isinstance(request, DescribeRequest):
            return 1.0
        if isinstance(request, DraftRequest):
            return request.count * request.steps * request.width * request.height / 512**2
        steps = recipes.planned_steps(request) if recipes is not None else (request.steps or 28)
        return steps * request.width * request.height / 1024**2

    def estimate(self, request: Request, recipes: Recipes | None) -> float:
        return self.units(request, recipes) * self.rate.get(request.kind, 1.0)

    def learn(self, kind: str, units: float, seconds: float) -> None:
        if units > 0:
            self.rate[kind] = 0.7 * self.rate.get(kind, seconds / units) + 0.3 * (seconds / units)
