"""Small ``nn.Module`` s that let recurrent models be written as an ``nn.Sequential``
(defined in :mod:`crop.models.layers`, so that models need not import the certifier).

``nn.GRU`` / ``nn.LSTM`` return a tuple, so a sequential model needs a layer that picks the
output sequence (:class:`TakeOutput`), and usually one that keeps the last time step
(:class:`LastStep`); a CNN front end needs its channel and time axes swapped
(:class:`Transpose`). The bound propagators understand all three.

Example::

    nn.Sequential(Transpose(1, 2), nn.GRU(6, 32, batch_first=True), TakeOutput(), LastStep(), nn.Linear(32, 6))
"""

from crop.models.layers import LastStep, TakeOutput, Transpose

__all__ = ["LastStep", "TakeOutput", "Transpose"]
