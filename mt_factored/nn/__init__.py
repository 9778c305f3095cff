"""Building blocks shared by the expert (TD-MPC2) and the factored student."""

from mt_factored.nn.blocks import (
    EnsembleLinear,
    EnsembleNormedLinear,
    NormedLinear,
    SimNorm,
    ensemble_mlp,
    mlp,
    renormed_embedding,
    simnorm,
)
from mt_factored.nn.scalars import DiscreteRegression, symexp, symlog

__all__ = [
    "DiscreteRegression",
    "EnsembleLinear",
    "EnsembleNormedLinear",
    "NormedLinear",
    "SimNorm",
    "ensemble_mlp",
    "mlp",
    "renormed_embedding",
    "simnorm",
    "symexp",
    "symlog",
]
