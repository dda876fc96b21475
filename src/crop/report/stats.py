"""Statistics over people: intervals, tests and harm rates for personalization gains.

The unit of evidence is the person. For every user, a method's gain is the Section 6.2 sum over
the available and unseen context, ``(A(M_P, Ca) - A(M_ref, Ca)) + (A(M_P, Cu) - A(M_ref, Cu))``,
averaged over that user's seeds first; Δ_P / Δ_G are the mean of those per-user gains (exactly
the paper's definition, with seeds averaged before users). On top of it:

* a 95 % paired bootstrap interval over users (the gains are paired differences, so resampling
  users resamples both methods together): ``scipy.stats.bootstrap``, percentile method,
  10,000 resamples, fixed random state, so a table is reproducible;
* the two-sided Wilcoxon signed-rank p-value of the per-user gains against zero
  (``scipy.stats.wilcoxon``; NaN when every gain is zero or fewer than two users);
* win / tie / loss counts: users whose gain is above ``+tie``, within ``±tie``, below ``-tie``
  (``tie`` = 0.5 pp by default: a HAPT user's unseen context has 137-191 windows, so half a
  point is about one window);
* the harm rate: the share of users whose unseen-context accuracy, averaged over seeds, falls
  more than ``harm_margin`` (2 pp) below the generic model's, with a 95 % bootstrap interval
  over users (:func:`harm_summary`);
* the worst decile: the mean unseen-context change against the generic model of the 10 % of
  people it serves worst (at least one person), and the single worst change;
* "lost a class": people for whom, in some unseen context, the recall of some class falls more
  than ``LOST_MARGIN`` (30 pp) below the generic model's recall of that class on the same
  windows (per-class recalls averaged over seeds; :func:`lost_class_users`). A person whose
  model stops recognising one activity can keep a balanced accuracy that looks fine on
  average; this count makes the loss visible.

With five users an interval is wide by construction: that is the point of reporting it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

Perf = dict[tuple[str, str, int, int], dict[str, float]]  # (scenario, method, user, seed) -> {context: acc %}

N_RESAMPLES = 10_000
TIE = 0.5
HARM_MARGIN = 2.0
LOST_MARGIN = 30.0
WORST_SHARE = 0.1


def per_user_means(perf: Perf, scenario: str, method: str) -> dict[int, dict[str, float]]:
    """``{user: {context: accuracy}}`` of ``method`` in ``scenario``, averaged over seeds."""
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (s, m, user, _seed), contexts in perf.items():
        if s == scenario and m == method:
            for context, value in contexts.items():
                acc[user][context].append(value)
    return {u: {c: float(np.mean(v)) for c, v in ctx.items()} for u, ctx in acc.items()}


def per_user_gains(
    perf: Perf, scenario: str, method: str, reference: str, contexts: tuple[str, ...] = ("available", "unseen")
) -> dict[int, float]:
    """Per-user gain of ``method`` over ``reference`` (sum over ``contexts``), over the users and
    seeds both have. Seeds are matched: a user's gain is the mean over the seeds both ran."""
    seeds: dict[tuple[int, str], set[int]] = defaultdict(set)
    for s, m, user, seed in perf:
        if s == scenario and m in (method, reference):
            seeds[(user, m)].add(seed)
    gains = {}
    for user in sorted({u for u, _ in seeds}):
        common = sorted(seeds.get((user, method), set()) & seeds.get((user, reference), set()))
        values = []
        for seed in common:
            p, r = perf[(scenario, method, user, seed)], perf[(scenario, reference, user, seed)]
            if all(c in p and c in r for c in contexts):
                values.append(sum(p[c] - r[c] for c in contexts))
        if values:
            gains[user] = float(np.mean(values))
    return gains


def bootstrap_interval(
    values: np.ndarray | list[float], level: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per person).

    Computed with NumPy: ``n_resamples`` resamples drawn as ``rng.integers(0, n, (n_resamples, n))``
    from ``np.random.default_rng(seed)``, their means, and the ``(1 - level) / 2`` percentiles on
    either side. These are the draws and the percentiles of ``scipy.stats.bootstrap(...,
    method="percentile", vectorized=True)`` (a test holds the two equal), without importing
    ``scipy.stats``, which costs about 1.5 s, a third of ``crop personalize``'s run time."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return (float("nan"), float("nan"))
    if values.size == 1 or np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    rng = np.random.default_rng(seed)
    n = values.size
    batch = max(1, min(n_resamples, (1 << 24) // n))  # at most 16 M indices (128 MB) at a time
    means = np.concatenate(
        [
            values[rng.integers(0, n, (min(batch, n_resamples - start), n))].mean(-1)
            for start in range(0, n_resamples, batch)
        ]
    )
    alpha = (1 - level) / 2
    return (float(np.percentile(means, 100 * alpha)), float(np.percentile(means, 100 * (1 - alpha))))


def format_interval(values: np.ndarray | list[float], *, signed: bool = False, digits: int = 1) -> str:
    """``mean [low, high]`` of ``values`` (one per person) with its bootstrap interval
    (:func:`bootstrap_interval`); ``signed`` writes ``+`` before gains; ``-`` for no values."""
    if len(values) == 0:
        return "-"
    low, high = bootstrap_interval(values)
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"{float(np.mean(values)):{spec}} [{low:{spec}}, {high:{spec}}]"


def wilcoxon_p(values: np.ndarray | list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``values`` against 0 (NaN if undefined)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if values.size < 2 or np.all(values == 0):
        return float("nan")
    return float(stats.wilcoxon(values, zero_method="wilcox", alternative="two-sided").pvalue)


def win_tie_loss(values: np.ndarray | list[float], tie: float = TIE) -> tuple[int, int, int]:
    values = np.asarray(values, dtype=float)
    return int((values > tie).sum()), int((np.abs(values) <= tie).sum()), int((values < -tie).sum())


def harm_rate(perf: Perf, scenario: str, method: str, margin: float = HARM_MARGIN) -> float:
    """Share of users whose unseen-context accuracy (mean over seeds) is more than ``margin``
    points below the generic model's (NaN without generic results)."""
    own = per_user_means(perf, scenario, method)
    generic = per_user_means(perf, scenario, "generic")
    users = [u for u in own if u in generic and "unseen" in own[u] and "unseen" in generic[u]]
    if not users:
        return float("nan")
    return float(np.mean([own[u]["unseen"] < generic[u]["unseen"] - margin for u in users]))


def unseen_changes(perf: Perf, scenario: str, method: str, reference: str = "generic") -> dict[int, float]:
    """Per-user unseen-context change of ``method`` against ``reference`` (pp, seeds matched)."""
    return per_user_gains(perf, scenario, method, reference, ("unseen",))


@dataclass(frozen=True)
class HarmSummary:
    """Who loses against the generic model in the unseen context, over people.

    ``rate`` is the share harmed (change below ``-HARM_MARGIN``) with its 95 % bootstrap
    interval ``[low, high]`` over users; ``worst_decile`` the mean change of the worst
    ``WORST_SHARE`` of people; ``worst`` the single worst change and ``worst_user`` whose it is;
    ``harmed`` the harmed users with their change, worst first."""

    rate: float
    low: float
    high: float
    worst_decile: float
    worst: float
    worst_user: object
    harmed: tuple[tuple[object, float], ...]
    n_users: int

    def interval(self) -> str:
        if self.n_users == 0:
            return "-"
        return f"{100 * self.rate:.0f} % [{100 * self.low:.0f}, {100 * self.high:.0f}]"


def harm_summary(perf: Perf, scenario: str, method: str, margin: float = HARM_MARGIN) -> HarmSummary:
    """Harm rate with its interval, worst decile and harmed people of ``method`` in ``scenario``."""
    changes = unseen_changes(perf, scenario, method)
    if not changes:
        nan = float("nan")
        return HarmSummary(nan, nan, nan, nan, nan, None, (), 0)
    users = sorted(changes, key=lambda u: (changes[u], str(u)))
    values = np.asarray([changes[u] for u in users], dtype=float)
    harmed = values < -margin
    low, high = bootstrap_interval(harmed.astype(float))
    k = max(1, int(np.ceil(WORST_SHARE * len(values))))
    return HarmSummary(
        float(harmed.mean()),
        low,
        high,
        float(values[:k].mean()),
        float(values[0]),
        users[0],
        tuple((u, float(changes[u])) for u in users if changes[u] < -margin),
        len(values),
    )


def class_recalls(records: list[dict], scenario: str, metric: str = "balanced_accuracy") -> dict:
    """``{(method, user, context_name): per-class recall (%) averaged over seeds}`` from the
    ``recall`` field of the ``metric`` records of unseen contexts (records without it are
    skipped: benches written before per-class recall was recorded)."""
    acc: dict[tuple, list[np.ndarray]] = defaultdict(list)
    for r in records:
        if (
            r.get("status", "ok") == "ok"
            and r.get("scenario") == scenario
            and r.get("metric") == metric
            and r.get("context") == "unseen"
            and isinstance(r.get("recall"), list)
        ):
            values = np.asarray([np.nan if v is None else float(v) for v in r["recall"]], dtype=float)
            acc[(r["method"], r["user"], r.get("context_name"))].append(100.0 * values)
    out = {}
    for key, rows in acc.items():
        width = max(len(v) for v in rows)
        padded = np.full((len(rows), width), np.nan)
        for i, v in enumerate(rows):
            padded[i, : len(v)] = v
        seen = ~np.isnan(padded)
        totals = np.where(seen, padded, 0.0).sum(0)
        counts = seen.sum(0)
        out[key] = np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
    return out


def lost_class_users(
    records: list[dict], scenario: str, method: str, margin: float = LOST_MARGIN, metric: str = "balanced_accuracy"
) -> dict[object, list[tuple[str, int, float, float]]] | None:
    """Users of ``method`` who lost a class in some unseen context of ``scenario``: for each, the
    ``(context, class, recall, generic recall)`` where the class's recall (mean over seeds) is more
    than ``margin`` pp below the generic model's. ``None`` when the records hold no per-class
    recall for ``method`` and ``generic``."""
    recalls = class_recalls(records, scenario, metric)
    own = {(u, c): v for (m, u, c), v in recalls.items() if m == method}
    ref = {(u, c): v for (m, u, c), v in recalls.items() if m == "generic"}
    common = [k for k in own if k in ref]
    if not common:
        return None
    lost: dict[object, list[tuple[str, int, float, float]]] = {}
    for user, context in sorted(common, key=str):
        a, g = own[(user, context)], ref[(user, context)]
        for cls in range(min(len(a), len(g))):
            if np.isfinite(a[cls]) and np.isfinite(g[cls]) and a[cls] < g[cls] - margin:
                lost.setdefault(user, []).append((str(context), cls, float(a[cls]), float(g[cls])))
    return lost


def lost_class_count(records: list[dict], scenario: str, method: str) -> tuple[int, int] | None:
    """``(people who lost a class, people with per-class recall)`` or ``None`` (no recall data)."""
    lost = lost_class_users(records, scenario, method)
    if lost is None:
        return None
    users = {r["user"] for r in records if r.get("scenario") == scenario and r.get("method") == method}
    return len(lost), len(users)


@dataclass(frozen=True)
class GainSummary:
    """A method's gain over a reference in one scenario, over people."""

    mean: float
    low: float
    high: float
    p_value: float
    wins: int
    ties: int
    losses: int
    n_users: int

    def interval(self) -> str:
        if self.n_users == 0:
            return "-"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def summarize_gain(
    perf: Perf, scenario: str, method: str, reference: str, *, tie: float = TIE, seed: int = 0
) -> GainSummary:
    gains = per_user_gains(perf, scenario, method, reference)
    values = np.asarray([gains[u] for u in sorted(gains)], dtype=float)
    if values.size == 0:
        nan = float("nan")
        return GainSummary(nan, nan, nan, nan, 0, 0, 0, 0)
    low, high = bootstrap_interval(values, seed=seed)
    w, t, lo = win_tie_loss(values, tie)
    return GainSummary(float(values.mean()), low, high, wilcoxon_p(values), w, t, lo, int(values.size))


def format_p(p: float) -> str:
    if not np.isfinite(p):
        return "-"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"
