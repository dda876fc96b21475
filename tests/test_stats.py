"""Statistics over people: checked against direct computations."""

import numpy as np
import pytest
from scipy import stats as sps

from crop.report.stats import (
    bootstrap_interval,
    harm_rate,
    per_user_gains,
    summarize_gain,
    wilcoxon_p,
    win_tie_loss,
)
from crop.report.tables import gain_table, summary_table


def perf_from(table):
    """{(method, user, seed): (Ca, Cu)} -> Perf for scenario "s"."""
    return {("s", m, u, seed): {"available": a, "unseen": c} for (m, u, seed), (a, c) in table.items()}


def test_per_user_gain_averages_seeds_and_sums_contexts():
    perf = perf_from(
        {
            ("generic", 1, 0): (90, 80),
            ("generic", 1, 1): (90, 80),
            ("crop", 1, 0): (95, 82),
            ("crop", 1, 1): (97, 78),
            ("generic", 2, 0): (70, 70),
            ("crop", 2, 0): (80, 60),
        }
    )
    gains = per_user_gains(perf, "s", "crop", "generic")
    assert gains == {1: pytest.approx(((5 + 2) + (7 - 2)) / 2), 2: pytest.approx(10 - 10)}


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 2.0, size=30)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_interval(values)
    # the percentile interval of the bootstrap distribution of the mean, by hand
    means = values[rng.integers(0, 30, size=(20000, 30))].mean(axis=1)
    assert low == pytest.approx(np.percentile(means, 2.5), abs=0.1)
    assert high == pytest.approx(np.percentile(means, 97.5), abs=0.1)
    assert bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)


@pytest.mark.parametrize("n, resamples", [(2, 10_000), (7, 10_000), (30, 10_000), (90, 999), (3000, 7000)])
def test_bootstrap_interval_equals_scipy_percentile_bootstrap(n, resamples):
    """The NumPy bootstrap draws what scipy.stats.bootstrap (percentile, vectorized) draws, also
    where it works in batches (n = 3000: 5592 resamples per batch)."""
    values = np.random.default_rng(n).normal(size=n)
    ref = sps.bootstrap(
        (values,),
        np.mean,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(5),
        vectorized=True,
    ).confidence_interval
    got = bootstrap_interval(values, n_resamples=resamples, seed=5)
    assert got == pytest.approx((ref.low, ref.high), rel=1e-12, abs=1e-12)


def test_wilcoxon_and_counts():
    values = np.array([3.0, 2.0, -1.0, 4.0, 0.2, 5.0, 1.5])
    assert wilcoxon_p(values) == pytest.approx(sps.wilcoxon(values).pvalue)
    assert np.isnan(wilcoxon_p([0.0, 0.0]))
    assert win_tie_loss(values, tie=0.5) == (5, 1, 1)


def test_harm_rate_counts_users_more_than_two_points_below_generic_on_the_unseen_context():
    perf = perf_from(
        {
            ("generic", 1, 0): (90, 80),
            ("crop", 1, 0): (99, 77.9),  # 2.1 below: harmed
            ("generic", 2, 0): (90, 80),
            ("crop", 2, 0): (99, 78.5),  # 1.5 below: not harmed
            ("generic", 3, 0): (90, 80),
            ("crop", 3, 0): (80, 90),
        }
    )
    assert harm_rate(perf, "s", "crop") == pytest.approx(1 / 3)


def test_tables_show_intervals_p_values_and_harm():
    rng = np.random.default_rng(1)
    table = {}
    for u in range(1, 11):
        base = rng.uniform(80, 90)
        table[("generic", u, 0)] = (base, base)
        table[("finetune", u, 0)] = (base + 5, base + 1)
        table[("crop", u, 0)] = (base + 5, base + 3 + rng.normal(0, 0.5))
    perf = perf_from(table)
    g = summarize_gain(perf, "s", "crop", "finetune")
    assert g.n_users == 10 and g.low > 0 and g.wins == 10 and g.p_value < 0.01
    t = gain_table(perf, "s")
    row = next(r for r in t.rows if r[0] == "crop")
    assert row[5].startswith(f"{g.mean:+.2f} [") and row[8] == "0 % [0, 0]"
    assert next(r for r in summary_table(perf).rows if r[0] == "crop")[2] == g.interval()


def test_format_interval_writes_the_mean_and_its_bootstrap_interval():
    from crop.report.stats import bootstrap_interval, format_interval

    values = [1.0, 2.0, 4.0, 3.5]
    low, high = bootstrap_interval(values)
    assert format_interval(values) == f"2.6 [{low:.1f}, {high:.1f}]"
    assert format_interval([-1.0, 2.0], signed=True, digits=2).startswith("+0.50 [")
    assert format_interval([]) == "-"


def test_harm_summary_gives_the_rate_its_interval_the_worst_decile_and_who_loses():
    from crop.report.stats import harm_summary

    table = {}
    changes = {u: 1.0 for u in range(1, 21)}
    changes.update({3: -5.0, 7: -2.5, 11: -1.9})  # 3 and 7 harmed; 11 within the margin
    for u, c in changes.items():
        table[("generic", u, 0)] = (90, 80)
        table[("crop", u, 0)] = (95, 80 + c)
    h = harm_summary(perf_from(table), "s", "crop")
    assert h.rate == pytest.approx(2 / 20) and h.n_users == 20
    assert h.low <= h.rate <= h.high and h.high < 0.5
    assert h.worst == pytest.approx(-5.0) and h.worst_user == 3
    assert h.worst_decile == pytest.approx((-5.0 - 2.5) / 2)  # 10 % of 20 people: the worst two
    assert [u for u, _ in h.harmed] == [3, 7]
    assert h.interval().startswith("10 % [")


def test_class_recall_and_a_lost_class_are_found_from_the_records():
    from crop.metrics import balanced_accuracy, class_recall
    from crop.report.stats import lost_class_count, lost_class_users

    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 0, 0, 0, 2, 2])
    assert class_recall(y, pred) == [1.0, 0.5, 0.5]
    assert np.mean(class_recall(y, pred)) == pytest.approx(balanced_accuracy(y, pred))
    assert class_recall(np.array([0, 2]), np.array([0, 2])) == [1.0, None, 1.0]

    def rec(method, user, seed, recall):
        return {
            "scenario": "s",
            "method": method,
            "user": user,
            "seed": seed,
            "status": "ok",
            "metric": "balanced_accuracy",
            "context": "unseen",
            "context_name": "c",
            "value": float(np.mean(recall)),
            "recall": recall,
        }

    records = [rec("generic", u, s, [1.0, 1.0, 0.9]) for u in (1, 2) for s in (0, 1)]
    records += [rec("crop", 1, 0, [1.0, 0.5, 0.9]), rec("crop", 1, 1, [1.0, 0.6, 0.9])]  # class 1: 55 vs 100
    records += [rec("crop", 2, 0, [1.0, 0.9, 0.9]), rec("crop", 2, 1, [1.0, 0.2, 0.9])]  # class 1: 55 on average
    records += [rec("finetune", 1, 0, [1.0, 0.8, 0.9]), rec("finetune", 2, 0, [1.0, 0.75, 0.9])]
    lost = lost_class_users(records, "s", "crop")
    assert set(lost) == {1, 2} and lost[1][0][:2] == ("c", 1) and lost[1][0][2] == pytest.approx(55.0)
    assert lost_class_count(records, "s", "crop") == (2, 2)
    assert lost_class_count(records, "s", "finetune") == (0, 2)  # 25 pp below: not lost
    assert lost_class_count([{**r, "recall": None} for r in records], "s", "crop") is None


def test_gain_and_harm_tables_list_the_new_measures():
    from crop.report.tables import harm_table

    table = {}
    for u in range(1, 11):
        table[("generic", u, 0)] = (80, 80)
        table[("finetune", u, 0)] = (90, 79)
        table[("crop", u, 0)] = (90, 85 if u != 4 else 70)
    perf = perf_from(table)
    t = gain_table(perf, "s")
    assert t.header[-3:] == ["harm [95 % CI]", "worst 10 % ΔCu", "lost a class"]
    row = next(r for r in t.rows if r[0] == "crop")
    assert row[8].startswith("10 % [") and row[9] == "-10.00" and row[10] == "-"
    h = harm_table(perf, "s")
    crop_row = next(r for r in h.rows if r[0] == "crop")
    assert crop_row[1] == "1 of 10" and crop_row[3] == "4 (-10.0)"
    assert next(r for r in h.rows if r[0] == "finetune")[3] == "none"
