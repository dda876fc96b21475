"""Input sets and the concretisation of linear bounds over them.

A linear function ``a . x`` over a set gives its lower bound in closed form:

* L-inf ball ``||x - x0||_inf <= eps``:  ``a . x0 - eps * ||a||_1``
* L2 ball    ``||x - x0||_2   <= eps``:  ``a . x0 - eps * ||a||_2``
* box ``lower <= x <= upper``:          ``a+ . lower + a- . upper``

(the dual norm, Hölder). Coefficients come as rows ``a`` of shape ``(R, *shape)``, each row
belonging to the sample ``index[r]`` of the batch ``(B, *shape)``; bounds have shape ``(R,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from crop.errors import CropError

Norm = Literal["linf", "l2"]


def check_norm(norm: str) -> Norm:
    if norm not in ("linf", "l2"):
        raise CropError(f"unknown norm {norm!r}; choose 'linf' or 'l2'")
    return norm  # type: ignore[return-value]


def _per_sample(eps: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    eps_t = torch.as_tensor(eps, dtype=like.dtype, device=like.device)
    if eps_t.dim() == 0:
        eps_t = eps_t.expand(like.shape[0])
    if eps_t.shape != (like.shape[0],):
        raise CropError(
            f"eps must be a number or one value per input ({like.shape[0]}), got shape {tuple(eps_t.shape)}"
        )
    if bool((eps_t < 0).any()):
        raise CropError("eps must be >= 0")
    return eps_t


@dataclass(frozen=True)
class NormBall:
    """``{x : ||x - center||_p <= eps}`` per sample; ``center`` ``(B, *shape)``, ``eps`` ``(B,)``."""

    center: torch.Tensor
    eps: torch.Tensor
    norm: Norm

    @classmethod
    def of(cls, center: torch.Tensor, eps: float | torch.Tensor, norm: str = "linf") -> NormBall:
        return cls(center, _per_sample(eps, center), check_norm(norm))

    def _eps(self) -> torch.Tensor:
        return self.eps.reshape((-1,) + (1,) * (self.center.dim() - 1))

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest box containing the ball (for both norms: ``center -+ eps``)."""
        e = self._eps()
        return self.center - e, self.center + e

    def lower(self, a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``min over the ball of sample index[r] of a[r] . x``; ``a`` ``(R, *shape)``, returns ``(R,)``."""
        flat = a.flatten(1)
        value = (flat * self.center.flatten(1)[index]).sum(-1)
        dual = flat.abs().sum(-1) if self.norm == "linf" else flat.norm(dim=-1)
        return value - self.eps[index] * dual


@dataclass(frozen=True)
class Box:
    """``{x : lower <= x <= upper}`` per sample, shapes ``(B, *shape)``."""

    lower_bound: torch.Tensor
    upper_bound: torch.Tensor

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lower_bound, self.upper_bound

    def lower(self, a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``min over the box of sample index[r] of a[r] . x``; ``a`` ``(R, *shape)``, returns ``(R,)``."""
        flat = a.flatten(1)
        center = ((self.upper_bound + self.lower_bound) / 2).flatten(1)[index]
        radius = ((self.upper_bound - self.lower_bound) / 2).flatten(1)[index]
        return (flat * center).sum(-1) - (flat.abs() * radius).sum(-1)


Domain = NormBall | Box
