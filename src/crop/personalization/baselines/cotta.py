"""CoTTA (Wang, Fink, Van Gool & Dai, "Continual test-time domain adaptation", CVPR 2022),
adapted to static personalization.

CoTTA adapts a source model to a stream of unlabelled target batches with three parts:

- a *teacher* that is the exponential moving average of the *student* (``momentum`` 0.999):
  after every optimizer step, ``teacher = momentum * teacher + (1 - momentum) * student``;
- *augmentation-averaged pseudo-labels*: the student is trained with the soft cross-entropy
  to the teacher's prediction; where the frozen source model ("anchor") is not confident
  (max softmax below ``confidence``), the teacher's prediction is the mean of its logits over
  ``n_augmentations`` augmented copies of the window;
- *stochastic restore*: after every step each element of every student parameter is reset to
  its source value with probability ``restore_prob``, which limits drift and forgetting.

The teacher is CoTTA's prediction model, and it is what this method returns.

Static personalization here means that the stream is the person's available-context
training windows, without their labels (see :func:`~._common.without_labels`), replayed for a
few epochs by the shared loop; the unseen contexts are never adapted to. Adaptations, and why:

- Augmentations for sensor windows instead of images (:func:`augment_windows`): Gaussian
  jitter, per-channel amplitude scaling, a small random 3-D rotation applied to every channel
  triad (x, y, z of each tri-axial sensor, same rotation for all triads of a window) when the
  channel count is a multiple of 3, and a random circular time shift.
- The confidence test is made per window, not on the batch mean as in the reference code.
- Static deployment uses BatchNorm running statistics, so the teacher predicts in eval mode,
  and its floating-point buffers (running means/variances) are the EMA of the student's, with
  the same momentum; integer buffers are copied.
- The loop keeps the epoch whose *teacher* has the best score on the labelled
  ``available.val`` split (checkpoint selection, as for every method of the comparison).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from crop.data.augment import augment_windows
from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.baselines._common import without_labels
from crop.personalization.loop import Hook, Objective, TrainConfig, train
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class CoTTAConfig:
    """Hyperparameters of CoTTA (defaults of the paper's CIFAR10-C setting) and of the
    sensor-window augmentations.

    Attributes:
        momentum: EMA momentum of the teacher.
        restore_prob: per-element probability of restoring a student weight to its source value.
        confidence: anchor confidence below which the teacher's prediction is augmentation-averaged.
        n_augmentations: augmented copies averaged (CoTTA: 32).
        jitter: std of additive Gaussian noise, relative to each window's per-channel std.
        scaling: std of per-channel amplitude factors around 1.
        rotation_deg: largest angle (degrees) of the random rotation of channel triads.
        max_shift: largest circular time shift, as a fraction of the window length.
        train: the adaptation phase (Adam 1e-3 as in CoTTA), best validation epoch kept.
    """

    momentum: float = 0.999
    restore_prob: float = 0.01
    confidence: float = 0.92
    n_augmentations: int = 32
    jitter: float = 0.05
    scaling: float = 0.1
    rotation_deg: float = 15.0
    max_shift: float = 0.1
    train: TrainConfig = field(default_factory=TrainConfig)


class TeacherStudent(nn.Module):
    """The student (trained by the optimizer) and its EMA teacher; ``forward`` is the teacher's."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.teacher = clone_model(student)
        self.teacher.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter and
    floating-point buffer (integer buffers are copied)."""
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for name, t in t_state.items():
        s = s_state[name]
        if t.is_floating_point():
            t.mul_(momentum).add_(s, alpha=1 - momentum)
        else:
            t.copy_(s)


class CoTTAUpdate(Hook):
    """After each optimizer step: the teacher's EMA update, then the stochastic restore."""

    def __init__(self, pair: TeacherStudent, source: dict[str, torch.Tensor], config: CoTTAConfig, seed: int) -> None:
        self.pair = pair
        self.source = source
        self.config = config
        self.gen = torch.Generator().manual_seed(seed)
        self.steps = 0
        self.restored = 0

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        ema_update_(self.pair.teacher, self.pair.student, self.config.momentum)
        if self.config.restore_prob > 0:
            for name, p in self.pair.student.named_parameters():
                if p.requires_grad:
                    restore = torch.rand(p.shape, generator=self.gen) < self.config.restore_prob
                    p.copy_(torch.where(restore, self.source[name], p))
                    self.restored += int(restore.sum())
        self.steps += 1


def cotta_objective(pair: TeacherStudent, anchor: nn.Module, config: CoTTAConfig, seed: int) -> Objective:
    """Soft cross-entropy of the student to the (augmentation-averaged) teacher prediction."""
    gen = torch.Generator().manual_seed(seed)

    def objective(model: nn.Module, x: torch.Tensor, _index: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher = pair.teacher
            was_training = teacher.training
            teacher.eval()
            try:
                target = teacher(x)
                low = anchor(x).softmax(1).amax(1) < config.confidence
                if config.n_augmentations > 0 and bool(low.any()):
                    xl = x[low]
                    views = augment_windows(  # every copy of every window gets its own draw
                        xl.repeat(config.n_augmentations, *([1] * (xl.ndim - 1))),
                        gen,
                        jitter=config.jitter,
                        scaling=config.scaling,
                        rotation_deg=config.rotation_deg,
                        max_shift=config.max_shift,
                    )
                    target[low] = teacher(views).view(config.n_augmentations, len(xl), -1).mean(0)
            finally:
                teacher.train(was_training)
            target = target.softmax(1)
        return -(target * pair.student(x).log_softmax(1)).sum(1).mean()

    return objective


def build_cotta(generic: nn.Module, config: CoTTAConfig, seed: int) -> tuple[TeacherStudent, CoTTAUpdate, Objective]:
    """The pieces :func:`fit_cotta` hands to the shared loop (exposed for tests and extensions)."""
    if not 0.0 <= config.momentum <= 1.0:
        raise CropError(f"cotta: momentum must lie in [0, 1], got {config.momentum}")
    if not 0.0 <= config.restore_prob <= 1.0:
        raise CropError(f"cotta: restore_prob must lie in [0, 1], got {config.restore_prob}")
    pair = TeacherStudent(clone_model(generic))
    anchor = clone_model(generic).eval().requires_grad_(False)
    source = {n: p.detach().clone() for n, p in pair.student.named_parameters()}
    update = CoTTAUpdate(pair, source, config, seed + 1)
    return pair, update, cotta_objective(pair, anchor, config, seed + 2)


@register_method("cotta", CoTTAConfig, "CoTTA: EMA teacher, augmentation-averaged pseudo-labels, stochastic restore")
def fit_cotta(
    generic: nn.Module,
    available: ContextSplit,
    config: CoTTAConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Adapt on the unlabelled available-context windows; return the teacher. ``generic`` is not modified."""
    check_available(generic, available)
    pair, update, objective = build_cotta(generic, config, seed)
    out = train(
        pair,
        without_labels(available.train),
        available.val,
        config.train,
        seed=seed,
        metric=metric,
        hooks=[update],
        objective=objective,
        trainable=list(pair.student.parameters()),
    )
    model = pair.teacher.eval()
    return PersonalizationResult(
        "cotta",
        model,
        states={"generic": state_copy(generic), "student": state_copy(pair.student), "final": state_copy(model)},
        info={
            "best_epoch": out.best_epoch,
            "history": out.history,
            "steps": update.steps,
            "restored_elements": update.restored,
        },
    )
