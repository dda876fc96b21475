"""The validation layer: every field of every registered config has a rule; types, ranges,
enumerations (read from the type hints) and nested tables are checked the same way by the TOML
loader, the Python API and the bench runner."""

import dataclasses
import math
import typing

import pytest

import crop
from crop.certify.robustness import RobustnessSpec
from crop.data.datasets.presets import PaperGenericConfig
from crop.errors import CropError
from crop.generic import GenericTrainConfig
from crop.personalization.registry import METHODS, available_methods, config_from_dict, config_to_dict
from crop.validate import (
    check_config,
    config_classes,
    field_kind,
    literal_values,
    rule_for,
    split_list,
    unruled_fields,
)


def registered_classes():
    available_methods()
    roots = [spec.config_class for spec in METHODS.values()] + [RobustnessSpec, GenericTrainConfig, PaperGenericConfig]
    return sorted({c for r in roots for c in config_classes(r)}, key=lambda c: c.__name__)


def test_every_field_of_every_registered_config_has_a_rule():
    """A new numeric (or free-text) field without a range rule fails here, not in a user's run."""
    missing = [f for cls in registered_classes() for f in unruled_fields(cls)]
    assert missing == [], f"add rules to crop.validate.RULES / CHOICES for {missing}"


@pytest.mark.parametrize("cls", registered_classes(), ids=lambda c: c.__name__)
def test_defaults_are_valid_and_survive_a_round_trip(cls):
    config = cls()
    check_config(config)
    if cls not in (RobustnessSpec,):
        assert config_from_dict(cls, config_to_dict(config)) == config


@pytest.mark.parametrize("cls", registered_classes(), ids=lambda c: c.__name__)
def test_every_enumeration_refuses_an_unknown_value(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if literal_values(hints[f.name]) is not None:
            with pytest.raises(CropError, match=rf"{f.name} = 'lbfgs' is not allowed: choose"):
                check_config(dataclasses.replace(cls(), **{f.name: "lbfgs"}))


@pytest.mark.parametrize("cls", registered_classes(), ids=lambda c: c.__name__)
def test_every_number_refuses_wrong_types_and_values_outside_its_range(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = field_kind(hints[f.name])
        if kind not in ("int", "float"):
            continue
        rule = rule_for(cls, f.name)
        bad = [True, "1", rule.hi + 1 if not rule.hi_open else rule.hi]
        bad += [2.5] if kind == "int" else [math.nan, math.inf]
        for value in bad:
            with pytest.raises(CropError, match=f.name):
                check_config(dataclasses.replace(cls(), **{f.name: value}))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"tau": "abc"}, "tau = 'abc' is not allowed: must be a number in [0, 1]"),
        ({"tau": 2}, "tau = 2.0 is not allowed"),
        ({"initial": {"epochs": 2.5}}, "initial.epochs = 2.5 is not allowed: must be an integer in [1, 10000]"),
        ({"initial": {"epochs": 0}}, "initial.epochs = 0"),
        ({"initial": {"batch_size": -8}}, "initial.batch_size = -8"),
        ({"initial": {"lr": -0.001}}, "initial.lr = -0.001"),
        ({"initial": {"lr": 0}}, "initial.lr = 0"),
        ({"initial": {"lr": 1e9}}, "initial.lr = 1000000000.0"),
        ({"initial": {"lr": math.nan}}, "must be a finite number"),
        ({"initial": {"patience": -1}}, "initial.patience = -1"),
        ({"initial": {"optimizer": "lbfgs"}}, "initial.optimizer = 'lbfgs' is not allowed: choose adam or sgd"),
        ({"initial": 5}, "initial = 5 is not allowed: must be a table of options"),
        ({"exclude_last": "yes"}, "exclude_last = 'yes' is not allowed: must be true or false"),
        ({"exclude_last": 1}, "must be true or false"),
        ({"select": "best"}, "unknown option 'select'"),
        ({"invariance": {"families": ["bogus"]}}, "invariance.families[0] = 'bogus'"),
        ({"invariance": {"draws": 10**9}}, "invariance.draws"),
        ({"contrastive": {"temperature": 0}}, "contrastive.temperature = 0.0"),
    ],
)
def test_config_from_dict_messages_name_key_value_and_what_is_allowed(values, message):
    from crop.personalization.crop import CRoPConfig

    with pytest.raises(CropError) as info:
        config_from_dict(CRoPConfig, values, "crop config")
    text = str(info.value)
    assert message in text and "\n" not in text


def test_epochs_zero_is_refused_except_where_a_phase_may_be_skipped():
    from crop.personalization.crop import CRoPConfig
    from crop.personalization.finetune import FinetuneConfig

    for cls, values in [(FinetuneConfig, {"train": {"epochs": 0}}), (CRoPConfig, {"initial": {"epochs": 0}})]:
        with pytest.raises(CropError, match="epochs = 0"):
            config_from_dict(cls, values)
    assert config_from_dict(CRoPConfig, {"final": {"epochs": 0}}).final.epochs == 0  # step 4 skipped


def test_the_python_api_goes_through_the_same_checks(tiny_model, tiny_split):
    from crop.personalization.finetune import FinetuneConfig
    from crop.personalization.loop import TrainConfig

    with pytest.raises(CropError, match="train.epochs = 0"):
        crop.personalize(tiny_model, tiny_split, FinetuneConfig(TrainConfig(epochs=0)), method="finetune")
    with pytest.raises(CropError, match="train.optimizer = 'lbfgs'"):
        crop.personalize(tiny_model, tiny_split, {"train": {"optimizer": "lbfgs"}}, method="finetune")
    with pytest.raises(CropError, match="seed = -1"):
        crop.personalize(tiny_model, tiny_split, method="finetune", seed=-1)


def test_certify_spec_counts_have_upper_limits():
    from crop.certify.robustness import parse_robustness_spec

    for text, field in [("sigma=0.05,n=10000000", "n = "), ("steps=100000000", "pgd_steps"), ("", "empty")]:
        with pytest.raises(CropError, match=field):
            parse_robustness_spec(text)


def test_tune_grids_are_validated_and_bounded():
    from crop.analysis._tune import expand_grid, grid_configs, parse_grid_option
    from crop.personalization.finetune import FinetuneConfig

    with pytest.raises(CropError, match="given twice"):
        parse_grid_option("train.lr=0.1;train.lr=0.2")
    with pytest.raises(CropError, match="at most 1000"):
        expand_grid({f"k{i}": list(range(10)) for i in range(4)})
    with pytest.raises(CropError, match="train.epochs = 1000000000000.0"):
        grid_configs(FinetuneConfig(), expand_grid(parse_grid_option("train.epochs=1e12")), "finetune")


@pytest.mark.parametrize("text", ["", ",", "2,", "2,,8", "2,2"])
def test_lists_refuse_empty_items_and_repeats(text):
    with pytest.raises(CropError):
        split_list(text, "--users")


@pytest.mark.parametrize("text", ["hapt-session:", "hapt-session,hapt-session:1", ",", "hapt-session:1,"])
def test_scenario_lists_are_strict(text):
    from crop.data.scenarios import parse_scenarios

    with pytest.raises(CropError):
        parse_scenarios(text)


def test_reliability_doc_lists_every_rule():
    from pathlib import Path

    from crop.validate import RULES

    doc = Path(__file__).resolve().parents[1] / "docs" / "RELIABILITY.md"
    text = doc.read_text()
    for key, rule in RULES.items():
        assert f"| `{key}` | {rule.text()}" in text, f"docs/RELIABILITY.md: add the row | `{key}` | {rule.text()} |"
