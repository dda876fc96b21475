"""Helpers the peer methods share: restricting which parameters compute gradients, and the
distance of a model's weights to the generic ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from crop.models.utils import State


@contextmanager
def only_these_require_grad(model: nn.Module, names: Iterable[str]) -> Iterator[list[nn.Parameter]]:
    """Inside the ``with`` statement, only the named parameters of ``model`` require grad (the others are
    neither optimized nor differentiated, which saves the backward pass through frozen layers).

    Yields those parameters in registration order; every ``requires_grad`` flag is restored on exit.
    """
    keep = set(names)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        for name, p in model.named_parameters():
            p.requires_grad_(name in keep and flags[name])
        yield [p for name, p in model.named_parameters() if name in keep and flags[name]]
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])


def weight_distance(state: State, reference: State, names: Iterable[str] | None = None) -> float:
    """Euclidean distance ``||w - w_ref||`` over the named entries (default: every floating-point entry)."""
    keys = [k for k, v in reference.items() if v.is_floating_point()] if names is None else list(names)
    total = sum(float(((state[k].double() - reference[k].double()) ** 2).sum()) for k in keys)
    return total**0.5


def parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters of ``model`` that require grad (the weights a finetuning changes)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


@torch.no_grad()
def detached_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter of ``model`` that requires grad, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
