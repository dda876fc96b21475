"""HAPT scenarios: which context is available for personalization and which are unseen.

=================  ======================  ==============================================
scenario           available context       unseen context(s)
=================  ======================  ==============================================
hapt-session:1     session 1               session 2
hapt-session:2     session 2               session 1
hapt-placement:1   session 1               session 2 in a rotated sensor frame
hapt-placement:2   session 2               session 1 in a rotated sensor frame
hapt-faults:1      session 1               session 2 with each sensor fault (4 contexts)
hapt-faults:2      session 2               session 1 with each sensor fault
hapt-heldout:1     session 1               session 2 with each held-out change (4 contexts)
hapt-heldout:2     session 2               session 1 with each held-out change
=================  ======================  ==============================================

``hapt-heldout`` is an independent check: its changes (a 30-degree tilt, the phone turned 180
degrees, per-channel gain errors, 15 % faster movements; :data:`~crop.data.transforms.HELDOUT_SHIFTS`)
were added after every default was chosen and are never used to choose anything.

The rotation and the faults are drawn from a generator seeded by the user id, so a person's
unseen context is the same across training seeds. ``hapt-placement`` uses the generic model
trained with rotation augmentation (``generic="hapt-rot"``); the others use ``"hapt"``.
Unseen-context data is test data only: no personalization method ever receives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crop.data import hapt
from crop.data.sensing import ContextSplit, SensingData, stratified_split
from crop.data.transforms import FAULTS, HELDOUT_SHIFTS, apply_fault, apply_heldout, random_rotations, rotate
from crop.errors import CropError

FAMILIES = {"hapt-session": "hapt", "hapt-placement": "hapt-rot", "hapt-faults": "hapt", "hapt-heldout": "hapt"}

# Users the benchmark personalizes; the shipped generic models never saw them, and
# GENERIC_VAL_USERS form the person-disjoint validation split of generic training.
PERSONALIZATION_USERS = (2, 8, 14, 20, 26)
GENERIC_VAL_USERS = (5, 11, 17, 23, 29)


@dataclass(frozen=True)
class Scenario:
    """A HAPT scenario. ``faults`` (``hapt-faults`` only; ``crop bench --faults``) replaces its four
    faulted contexts by these ``(fault, severity)`` pairs of :mod:`crop.data.faults`."""

    family: str
    number: int
    faults: tuple[tuple[str, float], ...] | None = None

    @property
    def name(self) -> str:
        return f"{self.family}:{self.number}"

    @property
    def available_session(self) -> int:
        return self.number

    @property
    def unseen_session(self) -> int:
        return 3 - self.number

    @property
    def generic(self) -> str:
        return FAMILIES[self.family]


def parse_scenarios(spec: str) -> list[Scenario]:
    """``"hapt-session"`` -> both scenarios; ``"hapt-session:1"`` -> the first; comma-separated
    lists allowed. Empty items, a missing number after ``:`` and repeated scenarios are refused."""
    if not isinstance(spec, str) or not spec.strip():
        raise CropError("no scenario given")
    out: list[Scenario] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            raise CropError(f"empty scenario in {spec!r}")
        family, sep, number = item.partition(":")
        if family not in FAMILIES:
            raise CropError(f"unknown scenario {item!r}; choose from {', '.join(FAMILIES)} (optionally :1 or :2)")
        if sep and number not in ("1", "2"):
            raise CropError(f"unknown scenario number in {item!r}: use :1 or :2")
        for n in [number] if sep else ["1", "2"]:
            scenario = Scenario(family, int(n))
            if scenario in out:
                raise CropError(f"scenario {scenario.name} given twice in {spec!r}")
            out.append(scenario)
    return out


@dataclass(frozen=True)
class UserScenario:
    """One person's data in one scenario: the available split and the unseen test contexts.

    ``user`` is an int (HAPT and most datasets) or a str (ExtraSensory UUIDs, your own files);
    ``scenario`` a HAPT :class:`Scenario` or a :class:`~crop.data.datasets.DatasetScenario`."""

    user: int | str
    scenario: Scenario | Any
    available: ContextSplit
    unseen: dict[str, SensingData]

    @property
    def available_name(self) -> str:
        """What results call the available context: ``session N`` on HAPT, the context labels
        (``hand+pocket``) on the other datasets."""
        name = getattr(self.scenario, "available_name", None)
        return name if name is not None else f"session {self.scenario.available_session}"


def build_user_scenario(user: int, scenario: Scenario, seed: int) -> UserScenario:
    """Available context split with ``seed``; unseen context(s) built with a user-seeded generator."""
    available = hapt.load_session(user, scenario.available_session)
    unseen = hapt.load_session(user, scenario.unseen_session)
    split = stratified_split(available, seed)
    rng = np.random.default_rng(10_000 + user)
    if scenario.family == "hapt-session":
        contexts = {f"session {scenario.unseen_session}": unseen}
    elif scenario.family == "hapt-placement":
        R = random_rotations(1, rng)[0]
        contexts = {"rotated": SensingData(rotate(unseen.X, R), unseen.y, f"{unseen.name} rotated")}
    elif scenario.family == "hapt-heldout":
        contexts = {
            shift: SensingData(apply_heldout(shift, unseen.X, rng), unseen.y, f"{unseen.name} {shift}")
            for shift in HELDOUT_SHIFTS
        }
    elif scenario.faults is not None:
        from crop.data.faults import faulted_contexts

        contexts = {
            name: SensingData(X, unseen.y, f"{unseen.name} {name}")
            for name, X in faulted_contexts(unseen.X, user, list(scenario.faults)).items()
        }
    else:
        contexts = {
            fault: SensingData(apply_fault(fault, unseen.X, rng), unseen.y, f"{unseen.name} {fault}")
            for fault in FAULTS
        }
    return UserScenario(user, scenario, split, contexts)
