"""Random transformations of sensor windows, in PyTorch, drawn from a seeded generator.

Used as augmentation (generic-model training, CoTTA's augmented views, invariance-preserving
personalization). Windows are ``(batch, channels, time)``; when ``channels`` is a multiple of
3, consecutive channel triads are taken as 3-axis sensors on one board (HAPT: accelerometer
x/y/z, gyroscope x/y/z), so a rotation turns every triad of a window by the same matrix.
Other shapes get only the transformations that make sense for them (see each function).
Every function is deterministic for a given generator state and returns a new tensor.
"""

from __future__ import annotations

import math

import torch


def uniform_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)`` uniform on SO(3) (QR of Gaussian matrices, sign-corrected)."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(1)
    return q


def random_rotations(n: int, max_deg: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)`` about uniform random axes by angles uniform in
    ``[-max_deg, max_deg]`` degrees (Rodrigues' formula)."""
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_deg)
    K = torch.zeros(n, 3, 3)
    K[:, 0, 1], K[:, 0, 2] = -axis[:, 2], axis[:, 1]
    K[:, 1, 0], K[:, 1, 2] = axis[:, 2], -axis[:, 0]
    K[:, 2, 0], K[:, 2, 1] = -axis[:, 1], axis[:, 0]
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3).expand(n, 3, 3) + s * K + (1 - c) * (K @ K)


def has_triads(x: torch.Tensor) -> bool:
    """Whether ``x`` is ``(batch, channels, time)`` with channels in 3-axis triads."""
    return x.ndim == 3 and x.shape[1] % 3 == 0


def rotate_triads(x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Turn every channel triad of window ``i`` by ``R[i]`` (``(batch, 3, 3)``)."""
    b, C, T = x.shape
    return torch.einsum("bij,bgjt->bgit", R, x.reshape(b, C // 3, 3, T)).reshape(b, C, T)


def augment_windows(
    x: torch.Tensor,
    gen: torch.Generator,
    *,
    jitter: float = 0.05,
    scaling: float = 0.1,
    rotation_deg: float = 15.0,
    max_shift: float = 0.1,
) -> torch.Tensor:
    """A randomly perturbed copy of sensor windows ``x``.

    For ``(batch, channels, time)`` windows: rotation of each channel triad by up to
    ``rotation_deg`` (when ``channels % 3 == 0``), circular time shift by up to ``max_shift`` of
    the window (``torch.roll`` semantics, per window), then amplitude scaling (factor
    ``1 + scaling * N(0, 1)`` per channel) and jitter (``jitter`` times the channel's standard
    deviation in the window). Other shapes ``(batch, ...)`` get scaling and jitter only (per
    feature).
    """
    b = x.shape[0]
    out = x
    if x.ndim == 3:
        C, T = x.shape[1], x.shape[2]
        if rotation_deg > 0 and C % 3 == 0:
            out = rotate_triads(out, random_rotations(b, rotation_deg, gen))
        steps = int(max_shift * T)
        if steps > 0:
            shift = torch.randint(-steps, steps + 1, (b, 1, 1), generator=gen)
            index = (torch.arange(T).view(1, 1, T) - shift) % T  # out[..., t] = in[..., t - shift]
            out = out.gather(2, index.expand(b, C, T))
        spread = x.std(dim=2, keepdim=True) if T > 1 else torch.ones_like(x[..., :1])
        factor_shape: tuple[int, ...] = (b, C, 1)
    else:
        spread = torch.ones_like(x)
        factor_shape = tuple(x.shape)
    if scaling > 0:
        out = out * (1 + scaling * torch.randn(factor_shape, generator=gen))
    if jitter > 0:
        out = out + jitter * spread * torch.randn(out.shape, generator=gen)
    return out
