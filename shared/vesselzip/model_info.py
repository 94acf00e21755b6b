"""What a segmenter can take, as plain data (torch-free): a worker that loaded a model
announces it, and the gateway refuses at upload a volume the model cannot take,
without loading the model itself."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field


class ModelInfo(BaseModel):
    name: str
    aliases: list[str] = Field(default_factory=list, description="Earlier names, accepted too.")
    answers: str | None = Field(
        default=None,
        description='The truth its masks answer: "named arteries" or "every vessel".',
    )
    summary: str = ""
    min_side: int = Field(
        default=1, ge=1, description="Fewest voxels along every axis, on the grid the model sees."
    )
    target_spacing: tuple[float, float, float] | None = Field(
        default=None,
        description="The voxel size (mm) the model resamples a volume to; None keeps its grid.",
    )

    def refusal(self, shape: Sequence[int], spacing: Sequence[float]) -> str | None:
        """Why the model cannot take a volume of this shape and voxel size; None if it can."""
        sides = list(shape)
        grid = ""
        if self.target_spacing is not None:
            sides = [
                round(n * s / t)
                for n, s, t in zip(shape, spacing, self.target_spacing, strict=True)
            ]
            grid = f" after resampling to {'x'.join(f'{t:g}' for t in self.target_spacing)} mm"
        if min(sides) >= self.min_side:
            return None
        return (
            f"model {self.name!r} needs at least {self.min_side} voxels along every axis"
            f"{grid}; this volume has {'x'.join(map(str, sides))}"
        )
