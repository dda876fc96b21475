"""Bad inputs for the CLI robustness suite (tests/test_robustness_cli.py), generated and listed.

A :class:`Case` is a command line, environment variables and files to create in a fresh working
directory first. In ``argv`` and ``env``, ``@name`` stands for a shared fixture file (see
``FIXTURES`` in the test module) and ``%name`` for a path made in the working directory by the
case's ``setup``. Every case must end with exit code 2, one line ``crop: error: ...`` on stderr
and no new or changed file.

Groups: ``option:*`` (every option of every command), ``toml:*`` (every field of every
registered method's config), ``data:*``, ``model:*``, ``env:*``, ``target:*`` (special files and
links as outputs), ``store:*`` (corrupt bench.json / summary.json / results.jsonl).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

from crop.personalization.registry import METHODS, available_methods
from crop.validate import _strip_optional, field_kind, literal_values, rule_for


@dataclass(frozen=True)
class Case:
    group: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    setup: tuple[tuple[str, ...], ...] = ()  # ("file", path, text) ("fifo", path) ("link", path, target) ("dir", path)
    expect: str = ""  # a substring the error line must contain

    @property
    def id(self) -> str:
        text = " ".join(self.argv) + "".join(f" {k}={v}" for k, v in self.env)
        text += "".join(f" [{' '.join(s[:2])}]" for s in self.setup if s[0] != "file" or len(s[2]) < 40)
        return f"{self.group}: {text}"[:150]


def C(group: str, *argv: str, env: dict[str, str] | None = None, setup=(), expect: str = "") -> Case:
    return Case(group, tuple(argv), tuple((env or {}).items()), tuple(setup), expect)


# Valid base options per command: each case overrides one of them (or adds one) with a bad value.
BASE: dict[str, dict[str, str]] = {
    "bench": {"--scenario": "hapt-session:1", "--out": "b"},
    "report": {"DIR": "@bench_dir"},
    "analyze": {"DIR": "@bench_dir"},
    "demo": {"--out": "d"},
    "personalize": {"--user": "2", "--out": "o"},
    "tune": {"--user": "2", "--method": "finetune", "--out": "t"},
    "certify": {"--model": "@ok_model", "--data": "@ok_npz"},
    "train-generic": {"--out": "g.safetensors"},
    "fairness": {"DIR": "@bench_dir"},
    "card": {"DIR": "@model_dir"},
    "methods": {},
    "faults": {},
    "export": {"DIR": "@ok_model", "--out": "m.onnx"},
    "predict": {"DIR": "@ok_model", "--data": "@ok_npz", "--out": "p.csv"},
    "resources": {"--methods": "generic", "--out": "r"},
    "docs": {},
}
POSITIONAL = {"DIR"}


def command(name: str, flags: tuple[str, ...] = (), **override: str | None) -> tuple[str, ...]:
    """``name`` with its base options, ``override`` replacing (``None``: dropping) some, then ``flags``."""
    opts = dict(BASE[name])
    for key, value in override.items():
        key = key if key.isupper() else "--" + key.replace("_", "-")
        if value is None:
            opts.pop(key, None)
        else:
            opts[key] = value
    argv = [name]
    for key, value in opts.items():
        argv += [value] if key in POSITIONAL else [key, value]
    return (*argv, *flags)


FIFO = (("fifo", "pipe"),)
LINK_TO_FILE = (("file", "real.txt", "keep me\n"), ("link", "link", "real.txt"))
DANGLING = (("link", "dangling", "nowhere/at/all"),)
REGULAR = (("file", "plain.txt", "a regular file\n"),)

# ---------------------------------------------------------------- option values

LIST_VALUES = ["", ",", "2,", "2,,8", "2,2", "x", "0", "31", "-1", "2.5", "all,2"]
SEED_LISTS = ["", "-1", "0,0", "1.5", "x", "0,-3", "4294967296", ","]
SCENARIOS = ["", " ", ",", "hapt-session:", "hapt-session:3", "hapt-session:0", "hapt-nope", ":1"]
SCENARIOS += ["hapt-session,hapt-session:1", "hapt-session:1,", "hapt-session:1,hapt-session:1"]
METHOD_LISTS = ["", "magic", "crop,crop", ",", "crop,", "generic,,crop"]
CERTIFY = ["", "eps=abc", "eps=-1", "eps=nan", "eps=inf", "sigma=0", "sigma=-1", "sigma=0.05,n=1000000000000"]
CERTIFY += ["sigma=0.05,n=1e12", "steps=100000000", "n=100", "foo=1", "0.1", "eps=0.1,eps=0.2", "norm=l3"]
CERTIFY += ["lipschitz=maybe", "sigma=0.05,alpha=1", "sigma=0.05,n0=0", "restarts=0", "batch_size=0", "eps="]
CERTIFY += ["eps=0.1,,0.2", "eps=" + ",".join(str(i / 1000) for i in range(40)), "sigma=0.05,n0=1000001", "eps=11"]
CERTIFY += ["sigma=0.05,radii=-1", "restarts=101", "steps=-1", "n0=5"]
GRIDS = ["", "tau", "=1", "train.lr=", "train.lr=0.1,,0.2", "train.lr=1e-3;train.lr=3e-3", "bogus=1"]
GRIDS += ["train.lr=0", "train.lr=abc", "train.epochs=1e12", "train.epochs=2.5", "train.optimizer=lbfgs"]
GRIDS += ["train.lr=1e-3,1e-3", "train.lr=" + ",".join(f"{i}e-5" for i in range(1, 103)), "train=5"]
GRIDS += [
    ";".join(
        f"{k}=" + ",".join(str(v) for v in range(1, 12)) for k in ("train.epochs", "train.batch_size", "train.patience")
    )
]
GRIDS += ["train.lr=nan", "train.include_initial=maybe", "train.batch_size=-8", "invariance.families=bogus"]
# Attribute tables of `crop fairness --attributes` (the fixture bench directory has user 2 only).
ATTRIBUTE_TABLES = [
    ("unknown.csv", "user,hand\n2,l\n99,r\n", "unknown user 99"),
    ("nouser.csv", "person,hand\n2,l\n", "missing column 'user'"),
    ("gap.csv", "user,hand,age\n2,l,\n", "missing column 'age'"),
    ("one.csv", "user,hand\n2,l\n8,r\n", "has one person (user 2)"),
    ("unknown.json", '{"2": {"hand": "l"}, "31": {"hand": "r"}}', "unknown user 31"),
    ("nouser.json", '[{"id": 2, "hand": "l"}]', "missing column 'user'"),
    ("gap.json", '[{"user": 2, "hand": "l"}, {"user": 8}]', "missing column 'hand'"),
    ("bad.json", "{not json", "not valid JSON"),
    ("dup.csv", "user,hand\n2,l\n2,r\n", "two rows"),
    ("name.csv", "user,hand\nsam,l\n", "not an integer user id"),
    ("norow.csv", "user,hand\n8,l\n14,l\n", "no row for user(s) [2]"),
    ("builtin.csv", "user,activity\n2,l\n8,l\n", "built-in attribute"),
    ("empty.csv", "", "empty attribute table"),
    ("table.txt", "user,hand\n2,l\n", ".csv or .json"),
]


def option_cases() -> list[Case]:
    out: list[Case] = []

    def add(cmd: str, opt: str, values, setup=(), flags=(), **extra: str | None) -> None:
        key = opt if opt in POSITIONAL else opt.lstrip("-").replace("-", "_")
        for v in values:
            out.append(C(f"option:{cmd} {opt}", *command(cmd, flags, **{**extra, key: v}), setup=setup))

    # root options and commands
    for v in ["0", "-1", "257", "abc", "1.5", ""]:
        out.append(C("option:crop --threads", "--threads", v, "methods"))
    out += [C("option:crop --threads", "methods", "--threads", "2"), C("option:crop", "--bogus", "methods")]
    out += [C("option:crop", "nope"), C("option:crop --threads", "--threads")]
    for flag in ("--quiet", "--verbose"):  # flags: a value is refused
        out.append(C(f"option:crop {flag}", f"{flag}=yes", "methods"))
        out.append(C(f"option:crop {flag}", flag, "personalize", "--user", "99", "--out", "o"))  # errors still print
    out += [C("option:crop --version", "methods", "--version")]  # an option of crop, not of a command
    for opt in ("--install-completion", "--show-completion"):  # typer's shell completion: flags of crop itself
        out += [C(f"option:crop {opt}", "methods", opt), C(f"option:crop {opt}", f"{opt}=bash", "methods")]
    # crop docs TOPIC: a topic is the name of one of the shipped docs/*.md, nothing else
    for topic in ["nope", "", " ", "../README", "docs/DATASETS.md", "DATASETS.txt", "/etc/passwd", "DATASETS/"]:
        out.append(C("option:docs DIR", "docs", topic, expect="topics: ANALYSIS"))
    out += [C("option:docs DIR", "docs", "DATASETS", "RESULTS"), C("option:docs", "docs", "--topic", "DATASETS")]
    out += [C("option:methods", "methods", "extra"), C("option:methods", "methods", "--bogus")]
    out += [C("option:faults", "faults", "extra"), C("option:faults", "faults", "--bogus")]
    ints = {
        "personalize": ["--user", "--seed"],
        "tune": ["--user", "--seed", "--budget"],
        "certify": ["--user", "--seed"],
    }
    ints |= {"demo": ["--seed"], "train-generic": ["--epochs", "--seed"], "bench": ["--workers", "--tune-budget"]}
    for cmd, opts in ints.items():
        for opt in opts:
            add(cmd, opt, ["abc", "1.5", "", "1e3"], flags=("--tune",) if opt == "--tune-budget" else ())
    for cmd in BASE:
        if cmd not in ("methods", "faults"):
            out.append(C(f"option:{cmd}", *command(cmd), "--bogus"))
            out.append(C(f"option:{cmd}", *command(cmd), "stray-argument"))
    # missing values / flags given values
    for cmd, opts in {
        "bench": ["--scenario", "--out", "--dataset", "--users", "--seeds", "--methods", "--config", "--metric"]
        + ["--tune-on", "--tune-budget", "--certify", "--norm", "--workers", "--protocol", "--generic"]
        + ["--root", "--model", "--arch", "--executor", "--address"],
        "personalize": ["--out", "--user", "--scenario", "--data", "--model", "--available", "--method", "--seed"]
        + ["--config", "--metric", "--dataset", "--root", "--arch", "--evidence"],
        "tune": ["--out", "--user", "--scenario", "--data", "--model", "--available", "--method", "--grid"]
        + ["--budget", "--seed", "--config", "--metric"],
        "certify": ["--model", "--certify", "--data", "--user", "--scenario", "--seed", "--out"],
        "train-generic": ["--out", "--kind", "--epochs", "--seed"],
        "demo": ["--out", "--seed"],
        "analyze": ["--users", "--seeds", "--methods"],
        "report": ["--metric"],
        "fairness": ["--attributes", "--resamples"],
        "card": ["--bench", "--out"],
    }.items():
        for opt in opts:
            out.append(C(f"option:{cmd} {opt}", *command(cmd), opt))
    flags = [("bench", "--quiet"), ("bench", "--tune"), ("tune", "--population"), ("analyze", "--no-figures")]
    flags += [(cmd, "--json") for cmd in ("bench", "personalize", "tune", "certify", "export", "fairness")]
    for cmd, flag in flags + [("bench", "--fairness")]:
        out.append(C(f"option:{cmd} {flag}", *command(cmd), f"{flag}=yes"))
    required = {"bench": ["scenario", "out"], "personalize": ["out"], "tune": ["out"], "certify": ["model"]}
    for cmd, keys in (required | {"train-generic": ["out"]}).items():
        for key in keys:
            out.append(C(f"option:{cmd} --{key}", *command(cmd, **{key: None})))
    out += [C("option:report DIR", "report"), C("option:analyze DIR", "analyze"), C("option:fairness DIR", "fairness")]
    out.append(C("option:card DIR", "card"))

    # export / resources (crop.deploy): every bad value is refused before any work
    some = REGULAR + (("dir", "empty"),)
    add("export", "DIR", ["", "%missing", "%plain.txt", "/dev/null", "%empty"], setup=some)
    add("export", "--out", ["", "%empty", "/dev/null"], setup=some)
    add("export", "--generic", ["%missing", "%empty"], setup=some)
    add("export", "--input-shape", ["", "abc", "0,128", "6,-1", "6,,128"])
    add("resources", "--methods", ["magic", ",", "crop,crop"])
    add("resources", "--user", ["0", "31", "abc"])
    add("resources", "--scenario", ["hapt-nope", "hapt-session", "hapt-session:3"])
    add("resources", "--seed", ["-1", "abc"])
    add("resources", "--repeats", ["0", "51", "abc"])
    add("resources", "--out", ["", "/dev/null", "%plain.txt"], setup=some)
    for opt in ("--out", "--generic", "--input-shape"):
        out.append(C(f"option:export {opt}", *command("export"), opt))
    for opt in ("--out", "--methods", "--user", "--scenario", "--seed", "--repeats"):
        out.append(C(f"option:resources {opt}", *command("resources"), opt))
    out += [
        C("option:export --out", *command("export", out=None)),
        C("option:resources --out", *command("resources", out=None)),
    ]
    out.append(C("option:export DIR", "export", "--out", "m.onnx"))
    # predict: a bad model, windows file or output is refused before anything is written
    add("predict", "DIR", ["", "%missing", "%plain.txt", "/dev/null", "%empty"], setup=some)
    add("predict", "--data", ["", "%missing", "%plain.txt", "/dev/null", "%empty"], setup=some)
    add("predict", "--out", ["", "%empty", "/dev/null", "p.txt", "p"], setup=some)
    for opt in ("--data", "--out"):
        out.append(C(f"option:predict {opt}", *command("predict"), opt))
        out.append(C(f"option:predict {opt}", *command("predict", **{opt[2:]: None})))
    out.append(C("option:predict DIR", "predict", "--data", "@ok_npz", "--out", "p.csv"))

    # bench
    add("bench", "--scenario", SCENARIOS)
    add("bench", "--dataset", ["uci", ""])
    # the paper's datasets (docs/DATASETS.md): a bad --root, options that do not apply
    add("bench", "--root", ["x", "%plain.txt"], setup=REGULAR)  # --root with hapt
    empty = REGULAR + (("dir", "empty"),)
    for name in ("stress", "widar", "extrasensory", "perceptr", "npz"):
        add("bench", "--root", ["%missing", "", "/dev/null", "%plain.txt"], setup=empty, dataset=name, scenario=None)
    add("bench", "--dataset", ["stress", "widar"], scenario=None)  # no --root
    add("bench", "--model", ["@ok_model"])  # hapt
    add("bench", "--model", ["@ok_model"], dataset="stress", root="%empty", scenario=None, setup=empty)
    add("bench", "--model", ["%missing.safetensors"], dataset="npz", root="%empty", scenario=None, setup=empty)
    add("bench", "--arch", ["pkg.mod:make"])  # hapt
    # --dataset csv's stream options: bad values, and any value with another dataset
    table = (("file", "t.csv", "user,context,label,time,a\nu,hand,sit,0,1\nu,pocket,sit,0,1\n"),)
    for cmd, who in (("bench", {}), ("personalize", {"user": "u"})):
        csv_args = {"dataset": "csv", "root": "%t.csv", "model": "@ok_model", "scenario": "hand", **who}
        add(cmd, "--rate", ["0", "-1", "nan", "inf", "1e9", "x"], setup=table, **csv_args)
        add(cmd, "--window", ["0", "1", "100001", "2.5"], setup=table, **csv_args)
        add(cmd, "--stride", ["0", "-3", "100001"], setup=table, **csv_args)
        for opt in ("--rate", "--window", "--stride"):
            add(cmd, opt, ["8"])  # hapt
            add(cmd, opt, ["8"], setup=empty, dataset="npz", root="%empty", model="@ok_model", scenario="left", **who)
    # --preset: an unknown name, or cpu where no paper preset exists (hapt, your own data)
    for cmd, who in (("bench", {}), ("personalize", {"user": "u"})):
        add(cmd, "--preset", ["bogus", "", "cpu"])  # hapt
        add(
            cmd,
            "--preset",
            ["cpu"],
            setup=table,
            dataset="csv",
            root="%t.csv",
            model="@ok_model",
            scenario="hand",
            **who,
        )
        add(
            cmd,
            "--preset",
            ["cpu"],
            setup=empty,
            dataset="npz",
            root="%empty",
            model="@ok_model",
            scenario="left",
            **who,
        )
    add("personalize", "--dataset", ["uci", ""])
    add("personalize", "--dataset", ["stress"], root=None)  # no --root
    add("personalize", "--root", ["%missing", "/dev/null", "%plain.txt"], setup=empty, dataset="stress", user="1")
    add("personalize", "--root", ["x"])  # hapt
    add("personalize", "--arch", ["pkg.mod:make"])  # hapt
    add("personalize", "--evidence", ["%missing", "%plain.txt", "/dev/null", "%empty"], setup=empty)
    add("bench", "--users", LIST_VALUES)
    add("bench", "--seeds", SEED_LISTS)
    add("bench", "--methods", METHOD_LISTS)
    add("bench", "--metric", ["bogus", ""])
    add("bench", "--tune-on", ["bogus", ""], flags=("--tune",))
    add("bench", "--tune-budget", ["0", "-1", "1001"], flags=("--tune",))
    out.append(C("option:bench --tune-budget", *command("bench", tune_budget="5")))
    out.append(C("option:bench --tune-budget", *command("bench", ("--tune",), tune_budget="3", tune_on="population")))
    add("bench", "--certify", CERTIFY)
    add("bench", "--norm", ["bogus", "BATCH", ""])
    add("bench", "--protocol", ["bogus", "", "TEST"])
    add("bench", "--generic", ["bogus", "", "hapt-nobn"])
    add("bench", "--faults", ["noise=0.1"])  # hapt-session: no faulted context to set
    add(
        "bench",
        "--faults",
        ["", "melted=1", "noise=-1", "noise=", "dead-gyro=2", "noise=1,noise=1", "all,"],
        scenario="hapt-faults:1",
    )
    out.append(
        C("option:bench --protocol", *command("bench", ("--tune",), tune_on="population", protocol="development"))
    )
    add("bench", "--workers", ["0", "65", "-2"])
    add("tune", "--workers", ["0", "65", "-2", "abc", "2"])  # 2: without --population
    add("bench", "--executor", ["bogus", "", "RAY"])
    add("bench", "--address", ["auto"])  # without --executor ray
    add("bench", "--address", ["nohost", "", "h:0", "127.0.0.1:1"], executor="ray")
    # report / analyze
    add("report", "--metric", ["bogus", ""])
    add("report", "DIR", ["", "%missing", "%plain.txt", "/dev/null", "%empty"], setup=REGULAR + (("dir", "empty"),))
    add("analyze", "DIR", ["", "%missing", "%plain.txt", "/dev/null", "%empty"], setup=REGULAR + (("dir", "empty"),))
    add("analyze", "--users", ["", "0", "2,2", "x", ","])
    # fairness: the bench directory, the attribute table (docs/FAIRNESS.md), the resamples
    add("fairness", "DIR", ["", "%missing", "%plain.txt", "/dev/null", "%empty"], setup=REGULAR + (("dir", "empty"),))
    add("fairness", "--resamples", ["0", "99", "100001", "abc", "1.5", ""])
    # card: the model directory, the bench directory, the output directory
    empty_dir = REGULAR + (("dir", "empty"),)
    add("card", "DIR", ["", "%missing", "%plain.txt", "/dev/null", "%empty", "@bench_dir"], setup=empty_dir)
    add("card", "--bench", ["", "%missing", "%plain.txt", "/dev/null", "%empty"], setup=empty_dir)
    add("card", "--out", ["", "/dev/null", "%plain.txt", "%plain.txt/sub"], setup=REGULAR)
    for name, text, expect in ATTRIBUTE_TABLES:
        out.append(
            C(
                "option:fairness --attributes",
                *command("fairness", attributes=f"%{name}"),
                setup=(("file", name, text),),
                expect=expect,
            )
        )
    add("fairness", "--attributes", ["%missing.csv", "", "/dev/null", "%adir"], setup=(("dir", "adir"),))
    bench_table = ("file", "t.csv", "user,hand\n2,l\n8,l\n14,r\n20,r\n26,r\n")
    out.append(
        C(
            "option:bench --attributes",
            *command("bench", attributes="%t.csv"),
            setup=(bench_table,),
            expect="--fairness",
        )
    )
    for name, text, expect in ATTRIBUTE_TABLES[:3]:
        argv = command("bench", ("--fairness",), attributes=f"%{name}")
        out.append(C("option:bench --attributes", *argv, setup=(("file", name, text),), expect=expect))
    add("analyze", "--seeds", ["", "-1", "x", "0,0"])
    add("analyze", "--methods", ["", "magic", "crop,crop"])
    # demo
    add("demo", "--seed", ["-1", "4294967296"])
    # personalize / tune / certify
    for cmd in ("personalize", "tune", "certify"):
        add(cmd, "--user", ["0", "31", "-1", "99"])
        add(cmd, "--seed", ["-1", "4294967296"])
        add(
            cmd,
            "--scenario",
            ["", "hapt-session", "hapt-x", "hapt-session:", "hapt-session:1,hapt-faults:1"],
            **({"data": None, "user": "2"} if cmd == "certify" else {}),
        )
    for cmd in ("personalize", "tune"):
        add(cmd, "--method", ["magic", "", "crop,finetune"])
        add(cmd, "--metric", ["bogus", ""])
        add(cmd, "--data", ["%missing.npz", "", "/dev/null"], user=None, model="@ok_model", available="left")
        add(cmd, "--model", ["%missing.safetensors", "", "/dev/null"])
        add(cmd, "--available", ["nope", ""], user=None, data="@ok_npz", model="@ok_model")
        add(
            cmd,
            "--config",
            ["%missing.toml", "", "/dev/null", "%bad.toml", "%table.toml", "%magic.toml"],
            setup=(
                ("file", "bad.toml", "[crop\n"),
                ("file", "table.toml", "crop = 5\n"),
                ("file", "magic.toml", "[magic]\nx = 1\n"),
            ),
        )
        out.append(C(f"option:{cmd} --data", *command(cmd, data="@ok_npz")))  # --user and --data
        out.append(C(f"option:{cmd} --data", *command(cmd, user=None, data="@ok_npz")))  # no --model
    add("tune", "--grid", GRIDS)
    add("tune", "--budget", ["0", "-1", "1001"])
    out.append(C("option:tune --population", *command("tune", budget="2"), "--population"))
    out.append(
        C("option:tune --population", *command("tune", user=None, data="@ok_npz", model="@ok_model"), "--population")
    )
    add("certify", "--certify", CERTIFY)
    add("certify", "--model", ["%missing.safetensors", "", "/dev/null"])
    add("certify", "--data", ["%missing.npz", "", "/dev/null"])
    out.append(C("option:certify --user", *command("certify", user="2")))  # both --user and --data
    out.append(C("option:certify --data", *command("certify", data=None)))  # neither
    # train-generic
    add("train-generic", "--kind", ["bogus", "", "HAPT"])
    add("train-generic", "--epochs", ["0", "-1", "10001", "1000000000000"])
    add("train-generic", "--seed", ["-1"])
    return out


# ---------------------------------------------------------------- TOML configs


def _toml(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def bad_toml_values(cls: type, name: str, hint: typing.Any, rule: typing.Any = None) -> list[str]:
    """TOML literals that the field ``cls.name`` (with range ``rule``) must refuse."""
    inner, optional = _strip_optional(hint)
    kind = field_kind(inner)
    rule = rule or rule_for(cls, name)
    if kind == "bool":
        return ['"yes"', "1", "0.5"]
    if kind == "literal":
        first = literal_values(inner)[0]
        return ['"bogus"', "1", f'"{str(first).upper()}"', f'["{first}"]']
    if kind == "config":
        return ["5", '"x"', "[1, 2]"]
    if kind == "tuple":
        return ['"orientation"', '["bogus"]', "[1]", '["orientation", "orientation"]']
    values = ['"abc"', "true"]
    if kind == "int":
        values += ["2.5", str(int(rule.lo) - 1), str(int(rule.hi) + 1)]
    else:
        values += [
            "nan",
            "inf",
            _toml(rule.lo if rule.lo_open else rule.lo - 1),
            _toml(rule.hi if rule.hi_open else rule.hi + 1),
        ]
    return values + ([] if optional else [])


def field_paths(cls: type, prefix: str = "") -> list[tuple[str, type, str, typing.Any]]:
    """(dotted path, owner class, field name, hint) of every field, nested ones included."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        out.append((prefix + f.name, cls, f.name, hints[f.name]))
        inner, _ = _strip_optional(hints[f.name])
        if dataclasses.is_dataclass(inner):
            out += field_paths(inner, f"{prefix}{f.name}.")
    return out


def toml_text(method: str, path: str, value: str) -> str:
    table, _, key = path.rpartition(".")
    return f"[{method}{'.' + table if table else ''}]\n{key} = {value}\n"


def toml_cases(full: bool) -> list[Case]:
    """Every field of every registered method: each bad value of its kind for the first method
    that has the field, one bad value (rotating) for every other method (``full``: all of them)."""
    available_methods()
    out: list[Case] = []
    seen: set[tuple] = set()
    commands = ("personalize", "bench", "tune")
    for i, (method, spec) in enumerate(sorted(METHODS.items())):
        cmd = commands[i % 3]
        argv_for = {
            "personalize": ("personalize", "--user", "2", "--method", method, "--config", "c.toml", "--out", "o"),
            "bench": ("bench", "--scenario", "hapt-session:1", "--methods", method, "--config", "c.toml", "--out", "b"),
            "tune": ("tune", "--user", "2", "--method", method, "--config", "c.toml", "--out", "t"),
        }[cmd]
        out.append(C(f"toml:{method}", *argv_for, setup=(("file", "c.toml", f"[{method}]\nbogus_option = 1\n"),)))
        for j, (path, owner, name, hint) in enumerate(field_paths(spec.config_class)):
            rule = rule_for(owner, name, spec.config_class, path)
            values = bad_toml_values(owner, name, hint, rule)
            key = (name, str(hint), rule)  # the same field inherited by an ablation: once
            first = key not in seen
            seen.add(key)
            chosen = values if (first or full) else [values[j % len(values)]]
            for value in chosen:
                text = toml_text(method, path, value)
                out.append(C(f"toml:{method}", *argv_for, setup=(("file", "c.toml", text),), expect=name))
    return out


# ---------------------------------------------------------------- data, model files, environment


DATA_FILES = ["nan_npz", "inf_npz", "huge_npz", "complex_npz", "string_npz", "no_y_npz", "no_x_npz", "float_y_npz"]
DATA_FILES += ["neg_y_npz", "nan_y_npz", "flat_npz", "empty_npz", "object_npz", "text_npz", "ctx_shape_npz"]
DATA_FILES += ["short_npz", "channels_npz", "bool_npz", "big_label_npz", "neg_huge_npz"]
MODEL_FILES = ["nan_model", "inf_model", "zero_std_model", "neg_std_model", "neg_var_model", "int_model"]
MODEL_FILES += ["missing_tensor_model", "extra_tensor_model", "shape_model", "no_arch_model", "unknown_arch_model"]
MODEL_FILES += ["bad_config_model", "list_config_model", "huge_config_model", "corrupt_model", "empty_model"]
MODEL_FILES += ["truncated_model", "bad_sparse_model", "huge_sparse_model", "nan_sparse_model", "text_model"]


def file_cases() -> list[Case]:
    out = []
    for name in DATA_FILES:
        out.append(C("data:certify", "certify", "--model", "@ok_model", "--data", f"@{name}"))
        out.append(C("data:personalize", *command("personalize", user=None, data=f"@{name}", model="@ok_model")))
    for name in ("nan_npz", "huge_npz", "short_npz", "classes_npz", "big_label_npz"):
        out.append(C("data:tune", *command("tune", user=None, data=f"@{name}", model="@ok_model", available="left")))
    out.append(C("data:personalize", *command("personalize", user=None, data="@classes_npz", model="@ok_model")))
    for name in MODEL_FILES:
        out.append(C("model:certify", "certify", "--model", f"@{name}", "--user", "2"))
        out.append(C("model:certify", "certify", "--model", f"@{name}", "--data", "@ok_npz"))
        out.append(C("model:personalize", *command("personalize", model=f"@{name}")))
        out.append(C("model:tune", *command("tune", user=None, data="@ok_npz", model=f"@{name}", available="left")))
    return out


def env_cases() -> list[Case]:
    out = []
    for v in ["abc", "0", "-1", "1.5", "257", "", " "]:
        out.append(C("env:CROP_THREADS", "methods", env={"CROP_THREADS": v}))
    for v in ["", "/dev/null", "%plain.txt", "%plain.txt/sub"]:
        out.append(C("env:CROP_CACHE_DIR", "methods", env={"CROP_CACHE_DIR": v}, setup=REGULAR))
        out.append(C("env:CROP_CACHE_DIR", *command("personalize"), env={"CROP_CACHE_DIR": v}, setup=REGULAR))
    for v in ["", "%missing.gz", "%empty", "/dev/null", "%plain.txt", "%pipe", "@text_npz"]:
        setup = REGULAR + FIFO + (("dir", "empty"),)
        out.append(C("env:CROP_HAPT_FILE", "methods", env={"CROP_HAPT_FILE": v}, setup=setup))
    for name in ["evil_gz", "garbage_gz", "truncated_gz", "empty_gz", "list_gz", "badframe_gz", "eval_gz"]:
        env = {"CROP_HAPT_FILE": f"@{name}", "CROP_CACHE_DIR": "@fresh_cache"}
        out.append(C("env:CROP_HAPT_FILE", *command("personalize"), env=env))
    out.append(C("env:CROP_HAPT_FILE", *command("certify", user="2", data=None), env=env))
    return out


# ---------------------------------------------------------------- special files and links as outputs


def target_cases() -> list[Case]:
    out = []
    file_targets = [
        ("/dev/null", ()),
        ("%pipe", FIFO),
        ("%link", LINK_TO_FILE),
        ("%dangling", DANGLING),
        ("%devlink", (("link", "devlink", "/dev/null"),)),
        ("%adir", (("dir", "adir"),)),
        ("%plain.txt/x.json", REGULAR),
        ("", ()),
        (".", ()),
    ]
    for target, setup in file_targets:
        out.append(C("target:certify", *command("certify"), "--out", target, setup=setup))
        out.append(C("target:train-generic", *command("train-generic", out=target), setup=setup))
    dir_targets = [
        ("/dev/null", ()),
        ("%pipe", FIFO),
        ("%plain.txt", REGULAR),
        ("%link", LINK_TO_FILE),
        ("%dangling", DANGLING),
        ("%plain.txt/sub", REGULAR),
        ("", ()),
    ]
    for cmd in ("bench", "demo", "personalize", "tune"):
        for target, setup in dir_targets:
            out.append(C(f"target:{cmd}", *command(cmd, out=target), setup=setup))
    inner = {
        "bench": ["results.jsonl", "bench.json", "timings.jsonl", "table.md", "deltas.png", "tables/00.csv", "tables"],
        "demo": ["results.jsonl", "errors.log"],
        "personalize": ["model.safetensors", "summary.json", "model.sparse.safetensors"],
        "tune": ["chosen.json", "model.safetensors", "tune.md"],
    }
    for cmd, names in inner.items():
        for name in names:
            for kind in ("fifo", "link") if name == "tables" else ("fifo", "link", "dir"):
                item = (
                    ("dir", f"out/{name}")
                    if kind == "dir"
                    else (kind, f"out/{name}", *(("/dev/null",) if kind == "link" else ()))
                )
                out.append(C(f"target:{cmd}", *command(cmd, out="%out"), setup=(("dir", "out"), item)))
    for name in ("card.html", "card.md"):
        for kind in ("fifo", "link", "dir"):
            item = (
                ("dir", f"m/{name}")
                if kind == "dir"
                else (kind, f"m/{name}", *(("/dev/null",) if kind == "link" else ()))
            )
            out.append(C("target:card", "card", "%m", setup=(("copy", "m", "@model_dir"), item)))
    for cmd, name in [("report", "table.md"), ("report", "tables/01.csv"), ("report", "index.html")] + [
        ("analyze", "analysis"),
        ("fairness", "fairness/fairness.md"),
        ("fairness", "fairness/summary.md"),
        ("fairness", "fairness/tables"),
    ]:
        for kind in ("fifo", "link"):
            item = (kind, f"copy/{name}", *(("/dev/null",) if kind == "link" else ()))
            out.append(C(f"target:{cmd}", cmd, "%copy", setup=(("copy", "copy", "@bench_dir"), item)))
    return out


def store_cases() -> list[Case]:
    out = []
    corrupt = {
        "bench.json": ["{not json", "[1, 2]", '{"configs": 5}', '{"configs": {"crop": 3}}', '{"metric": 5}', ""],
        "summary.json": ["{", "[]", '{"user": 2}', '{"user": "2", "method": "crop"}', "null"],
        "results.jsonl": ["garbage\n", '{"user": 2}\n', "[1]\n", "\n\n"],
    }
    for text in corrupt["bench.json"]:
        setup = (("copy", "b", "@bench_dir"), ("file", "b/bench.json", text))
        out.append(C("store:bench.json", *command("bench", out="%b"), setup=setup))
        out.append(C("store:bench.json", "analyze", "%b", setup=setup))
    for text in corrupt["summary.json"]:
        out.append(C("store:summary.json", "analyze", "%p", setup=(("dir", "p"), ("file", "p/summary.json", text))))
    summary = (
        '{"user": 2, "scenario": "hapt-session:1", "method": "%s", "seed": 0, "metric": "%s", "scores": {}, '
        '"generic_model": {"source": "shipped"}, "config": null}'
    )
    for method, metric in [("magic", "balanced_accuracy"), ("crop", "bogus")]:
        text = summary % (method, metric)
        out.append(C("store:summary.json", "analyze", "%p", setup=(("dir", "p"), ("file", "p/summary.json", text))))
    bad_summaries = corrupt["summary.json"] + ['{"method": "crop", "metric": "f1", "scores": {"a": {"f1": "x"}}}']
    for text in bad_summaries:
        setup = (("copy", "m", "@model_dir"), ("file", "m/summary.json", text))
        out.append(C("store:summary.json", "card", "%m", setup=setup))
    for name, text in [
        ("model.safetensors", "not a model\n"),
        ("certify.json", "{"),
        ("certify.json", '{"results": 1}'),
    ]:
        out.append(C(f"store:{name}", "card", "%m", setup=(("copy", "m", "@model_dir"), ("file", f"m/{name}", text))))
    for text in corrupt["results.jsonl"]:
        out.append(C("store:results.jsonl", "report", "%r", setup=(("dir", "r"), ("file", "r/results.jsonl", text))))
        out.append(C("store:results.jsonl", "fairness", "%r", setup=(("dir", "r"), ("file", "r/results.jsonl", text))))
    for text in corrupt["bench.json"][:3]:
        setup = (("copy", "b", "@bench_dir"), ("file", "b/bench.json", text))
        out.append(C("store:bench.json", "fairness", "%b", setup=setup))
    return out


def all_cases(full: bool = True) -> list[Case]:
    cases = option_cases() + toml_cases(full) + file_cases() + env_cases() + target_cases() + store_cases()
    seen: set[tuple] = set()
    unique = []
    for c in cases:
        key = (c.argv, c.env, c.setup)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique
