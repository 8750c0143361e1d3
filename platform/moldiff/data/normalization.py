"""Property normalisation for regression heads: (c - mean) / MAD, both from the training split
(EDM's and UniGEM's convention; MAD = mean absolute deviation from the mean). It is stored with the
checkpoint, so predictions of a trained model come back in the dataset's units."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PropertyNormalizer:
    name: str
    unit: str
    mean: float
    mad: float

    @classmethod
    def from_values(cls, name: str, unit: str, values) -> "PropertyNormalizer":
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0 or not np.isfinite(values).all():
            raise ValueError(f"property {name!r}: need finite training values to normalise, got {values.size} values")
        mean = float(values.mean())
        mad = float(np.abs(values - mean).mean())
        if mad == 0:
            raise ValueError(f"property {name!r} is constant ({mean} {unit}) on the training split: nothing to predict")
        return cls(name, unit, mean, mad)

    def normalize(self, values):
        return (values - self.mean) / self.mad

    def denormalize(self, values):
        return values * self.mad + self.mean

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "checkpoint") -> "PropertyNormalizer":
        missing = [k for k in ("name", "unit", "mean", "mad") if k not in raw]
        if missing:
            raise ValueError(f"{source}: property normaliser lacks {missing}")
        mad = float(raw["mad"])
        if not (math.isfinite(mad) and mad > 0 and math.isfinite(float(raw["mean"]))):
            raise ValueError(f"{source}: property normaliser has mean {raw['mean']} and MAD {raw['mad']} "
                             "(need finite values and MAD > 0)")
        return cls(str(raw["name"]), str(raw["unit"]), float(raw["mean"]), mad)
