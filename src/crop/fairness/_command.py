"""``crop fairness DIR``: read a bench directory, gather the attributes, write the report.

Files written under ``DIR/fairness/``: ``fairness.md`` (every table, with notes),
``summary.md`` (the headline tables, appended to ``DIR/table.md`` by ``crop bench --fairness``),
``tables/*.csv`` (raw values), ``traits.csv`` (each person's measured traits and groups per
scenario), ``group-gains-<scenario>.png`` and ``person-gains-<scenario>.png``. Scenario and
attribute names in file names follow :mod:`crop.safe_names` (``hapt-session:1`` ->
``hapt-session-1``; a name that is not plain lowercase gets a slug and a hash).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from crop.errors import CropError
from crop.fairness._attributes import PersonAttributes, load_attributes
from crop.fairness._carried import carried_attributes
from crop.fairness._report import FairnessReport, build_report
from crop.fairness._traits import TRAITS, hapt_trait_values, trait_attributes
from crop.report.escape import csv_row

OUT = "fairness"
FILES = ("fairness.md", "summary.md", "traits.csv")


def dataset_users(dataset: str, root: str | Path | None = None, options: dict | None = None) -> tuple:
    """Every user id of ``dataset`` (an attribute table naming another is refused); datasets
    other than HAPT are read from ``root`` (with the dataset's ``options``, bench.json's
    ``dataset_options``)."""
    if dataset == "hapt":
        from crop.data.hapt import USERS

        return USERS
    return tuple(_dataset(dataset, root, options).users())


def _dataset(dataset: str, root: str | Path | None, options: dict | None = None) -> Any:
    from crop.data.datasets import get_dataset

    if root is None or str(root) == "":
        raise CropError(f"dataset {dataset!r} needs its directory (bench.json has no root)")
    return get_dataset(dataset, str(root), **(options or {}))


def carried_for(
    dataset: str, root: str | Path | None, users: Iterable[Any], options: dict | None = None
) -> tuple[PersonAttributes, list[str]]:
    """The per-person attributes ``dataset``'s own files carry for ``users`` (none for HAPT,
    which publishes no demographics) and notes on those left out (:mod:`crop.fairness._carried`)."""
    if dataset == "hapt":
        return PersonAttributes({}), []
    data = _dataset(dataset, root, options).load()
    if not data.attributes:
        return PersonAttributes({}), [f"the {dataset} files under {root} carry no per-person attributes"]
    return carried_attributes(data.attributes, users, f"the {dataset} files")


def read_table_for(
    path: Path | None,
    users: Iterable[Any],
    dataset: str = "hapt",
    root: str | Path | None = None,
    options: dict | None = None,
) -> PersonAttributes | None:
    """The checked attribute table at ``path`` for ``users`` (``None`` without a path). Its
    columns may not take the name of a built-in trait or of an attribute the dataset carries."""
    if path is None:
        return None
    users = list(users)
    carried = carried_for(dataset, root, users, options)[0] if dataset != "hapt" else PersonAttributes({})
    reserved = (*TRAITS, *carried.groups)
    known = dataset_users(dataset, root, options)
    return load_attributes(path, users=users, known_users=known, reserved=reserved, dataset=dataset)


def check_targets(out: Path) -> None:
    """Everything ``crop fairness`` writes is a regular file or absent (checked up front)."""
    from crop.outputs import check_out_dir, check_write_target

    target = check_out_dir(out / OUT, "the fairness directory", FILES)
    check_out_dir(target / "tables", "the fairness tables directory")
    if target.is_dir():
        for path in [*target.glob("*.png"), *target.glob("tables/*.csv")]:
            check_write_target(path)


def scenario_traits(
    scenario: str, users: list[int], settings: dict[str, Any], say: Callable[[str], None] | None = None
) -> tuple[PersonAttributes, str | None]:
    """HAPT traits of ``users`` in ``scenario`` (:mod:`crop.fairness._traits`), and a note when
    there are none."""
    from crop.bench.runner import generic_kind, serving_fold
    from crop.data.scenarios import parse_scenarios
    from crop.fairness._traits import MIN_PEOPLE
    from crop.generic import generic_for_fold

    if settings.get("dataset", "hapt") != "hapt":
        return PersonAttributes({}), f"{scenario}: no built-in traits for dataset {settings.get('dataset')!r}"
    if len(users) < 6:
        return PersonAttributes({}), f"{scenario}: traits need at least {MIN_PEOPLE} people for terciles"
    from crop.data.hapt import USERS

    try:
        (sc,) = parse_scenarios(scenario)
    except (CropError, ValueError):
        return PersonAttributes({}), f"{scenario}: no HAPT traits for a scenario HAPT does not have"
    if any(isinstance(u, bool) or u not in USERS for u in users):
        return PersonAttributes({}), f"{scenario}: no HAPT traits for users HAPT does not have"
    kind = generic_kind(sc, settings.get("norm", "batch"), settings.get("generic"))
    protocol = settings.get("protocol", "test")
    models: dict[int, Any] = {}
    folds: dict[int, Any] = {}
    for user in users:
        fold = serving_fold(user, protocol)
        if fold not in folds:
            if say:
                say(f"{scenario}: generic model {kind}, fold {fold}")
            folds[fold] = generic_for_fold(kind, fold)[0]
        models[user] = folds[fold]
    return trait_attributes(hapt_trait_values(users, sc.available_session, models)), None


def _traits_csv(traits: dict[str, PersonAttributes]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scenario", "user", "attribute", "value", "group"])
    for scenario, attrs in traits.items():
        for attribute, groups in attrs.groups.items():
            values = attrs.values.get(attribute, {})
            for user in sorted(groups):
                value = values.get(user)
                row = [scenario, user, attribute, "" if value is None else round(value, 6), groups[user]]
                writer.writerow(csv_row(row))
    return buf.getvalue()


def run_fairness(
    out: Path,
    attributes: Path | None = None,
    *,
    resamples: int = 2000,
    say: Callable[[str], None] | None = None,
) -> FairnessReport:
    """Write the fairness report of the bench directory ``out`` (module docstring); return it,
    with ``path`` set to ``fairness.md``."""
    from crop.bench.checks import read_settings
    from crop.bench.runner import load_results
    from crop.fairness._plots import group_gains, person_gains
    from crop.report.files import write_text_atomic
    from crop.report.tables import performance
    from crop.safe_names import data_path, distinct, inside

    out = Path(out)
    if not (out / "results.jsonl").is_file():
        raise CropError(f"{out} holds no results.jsonl (a crop bench directory expected)")
    settings = read_settings(out) if (out / "bench.json").is_file() else {}
    dataset = str(settings.get("dataset", "hapt"))
    root = settings.get("root")
    options = settings.get("dataset_options") or {}  # --dataset csv: --rate, --window, --stride
    check_targets(out)
    records = load_results(out)
    perf = performance(records, "balanced_accuracy")
    users = sorted({k[2] for k in perf}, key=str)
    table = read_table_for(attributes, users, dataset, root, options)
    notes = [f"bench directory: {out}"]
    if attributes is not None:
        notes.append(f"attributes: {attributes}")
    metric = str(settings.get("metric", "balanced_accuracy"))
    if metric != "balanced_accuracy":
        notes.append(f"the bench selected models on {metric}; these tables report balanced accuracy")
    by_scenario: dict[str, PersonAttributes] = {}
    for scenario in sorted({k[0] for k in perf}):
        scenario_users = sorted({k[2] for k in perf if k[0] == scenario}, key=str)
        traits, note = scenario_traits(scenario, scenario_users, settings, say)
        if note:
            notes.append(note)
        carried, skipped = carried_for(dataset, root, scenario_users, options)
        notes += [f"{scenario}: {n}" for n in skipped]
        attrs = traits.merged(carried)
        by_scenario[scenario] = attrs.merged(table) if table is not None else attrs
    class_names = None
    if dataset == "hapt":
        from crop.data.hapt import ACTIVITIES

        class_names = list(ACTIVITIES)
    else:
        from crop.data.datasets import dataset_class

        class_names = list(settings.get("classes") or getattr(dataset_class(dataset), "class_names", ())) or None
    report = build_report(
        records,
        by_scenario,
        class_names=class_names,
        resamples=resamples,
        notes=notes,
        on_step=say,
    )
    target = out / OUT
    tables = {stem: inside(target / "tables", f"{stem}.csv") for stem in report.tables}
    figures = {
        s: (data_path(target, "group-gains", s, suffix=".png"), data_path(target, "person-gains", s, suffix=".png"))
        for s in report.group_rows
    }
    distinct([(s, p) for s, pair in figures.items() for p in pair], "the fairness figures of scenarios")
    for stem, t in report.tables.items():
        write_text_atomic(tables[stem], t.csv())
    write_text_atomic(target / "traits.csv", _traits_csv(by_scenario))
    for scenario, rows in report.group_rows.items():
        group_gains(rows, figures[scenario][0], f"{scenario}: gain over the generic model per group")
        generic = {k[2]: [] for k in perf if k[0] == scenario and k[1] == "generic"}
        for (s, m, u, _), ctx in perf.items():
            if s == scenario and m == "generic" and "unseen" in ctx:
                generic[u].append(ctx["unseen"])
        order = sorted(generic, key=lambda u: (sum(generic[u]) / max(len(generic[u]), 1), u))
        bands = by_scenario[scenario].groups.get("generic_accuracy")
        person_gains(report.person_gains[scenario], order, figures[scenario][1], bands)
    write_text_atomic(target / "summary.md", report.summary)
    report.path = write_text_atomic(target / "fairness.md", report.markdown)
    return report
