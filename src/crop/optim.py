"""Adam for the training loop without torch.compile's start-up cost.

``torch.optim.Optimizer`` (torch 2.x) wraps its constructor, ``zero_grad`` and ``step`` in
guards for ``torch.compile`` that import ``torch._dynamo`` (and with it sympy) on first use:
about 1.5 s of CPU and 70 MB on this machine, as much as importing torch itself, paid by every
``crop personalize`` although crop never compiles anything.

:class:`EagerAdam` keeps Adam's per-parameter state and calls torch's own functional kernel,
``torch.optim.adam.adam`` (the function ``torch.optim.Adam.step`` calls), with the arguments
``torch.optim.Adam`` passes by default, so the update is the same code and the weights are
bit-identical (``tests/test_startup.py`` checks it against ``torch.optim.Adam``). Only the
bookkeeping (lazy state, ``zero_grad``) is written here. It supports what the training loop
uses: learning rate, weight decay, betas and eps. :func:`adam` falls back to
``torch.optim.Adam`` where the functional kernel is not there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def _functional_adam() -> Callable[..., None] | None:
    """``torch.optim.adam.adam`` (the package ``torch.optim`` hides the module's name)."""
    try:
        return getattr(importlib.import_module("torch.optim.adam"), "adam", None)
    except ImportError:
        return None


class EagerAdam:
    """Adam (Kingma and Ba) over ``params``; the update of ``torch.optim.Adam`` with
    ``amsgrad=False, maximize=False`` and torch's default implementation choice."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [
            {"params": self.params, "lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps}
        ]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state.get(p)
            if state is None:  # as torch.optim.Adam: a CPU scalar step, zero moments
                scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
                state = self.state[p] = {
                    "step": torch.tensor(0.0, dtype=scalar),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        _functional_adam()(  # type: ignore[misc]
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            foreach=None,
            capturable=False,
            differentiable=False,
            fused=None,
            grad_scale=None,
            found_inf=None,
            has_complex=any(torch.is_complex(p) for p in params),
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


def adam(params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0) -> Any:
    """:class:`EagerAdam` where torch has the functional kernel, else ``torch.optim.Adam``."""
    if callable(_functional_adam()):
        return EagerAdam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
