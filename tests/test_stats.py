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
    assert row[5].startswith(f"{g.mean:+.2f} [") and row[8] == "0 %"
    assert next(r for r in summary_table(perf).rows if r[0] == "crop")[2] == g.interval()


def test_format_interval_writes_the_mean_and_its_bootstrap_interval():
    from crop.report.stats import bootstrap_interval, format_interval

    values = [1.0, 2.0, 4.0, 3.5]
    low, high = bootstrap_interval(values)
    assert format_interval(values) == f"2.6 [{low:.1f}, {high:.1f}]"
    assert format_interval([-1.0, 2.0], signed=True, digits=2).startswith("+0.50 [")
    assert format_interval([]) == "-"
