"""The report card (``crop card``): built from a real (fast) personalization, a tiny all-user
bench and a ``crop certify`` output; parsed back to check that every section is there, every
figure is embedded and nothing is fetched from outside the file."""

import base64
import json
import shutil
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from crop.cli import app
from crop.errors import CropError
from crop.report.card import SECTIONS, build_card, count_weights, find_models, write_cards

FAST = "[crop]\ntau = 0.1\n[crop.initial]\nepochs = 2\n[crop.final]\nepochs = 1\n[finetune.train]\nepochs = 2\n"


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A crop personalize directory (user 2, fast config) with certify.json, and a bench of users
    2 and 8 with --certify and --fairness."""
    root = tmp_path_factory.mktemp("card")
    cfg = root / "fast.toml"
    cfg.write_text(FAST)
    model_dir = root / "models" / "u2"
    r = cli("personalize", "--user", 2, "--config", cfg, "--out", model_dir)
    assert r.exit_code == 0, r.output
    r = cli(
        "certify",
        "--model",
        model_dir / "model.safetensors",
        "--user",
        2,
        "--certify",
        "eps=0.01",
        "--out",
        model_dir / "certify.json",
    )
    assert r.exit_code == 0, r.output
    bench = root / "bench"
    r = cli(
        "bench",
        "--scenario",
        "hapt-session:1",
        "--users",
        "2,8",
        "--seeds",
        "0",
        "--methods",
        "generic,finetune,crop",
        "--config",
        cfg,
        "--certify",
        "eps=0.01",
        "--fairness",
        "--out",
        bench,
    )
    assert r.exit_code == 0, r.output
    return root, model_dir, bench


class Page(HTMLParser):
    """What a browser would load or run: section ids, images, scripts, any external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.sections, self.images, self.scripts, self.external, self.tags = [], [], 0, [], set()
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.scripts += 1
        for name, value in attrs.items():
            if name.startswith("on") or (value and ("http://" in value or "https://" in value or "//" == value[:2])):
                self.external.append((tag, name, value))

    def handle_data(self, data):
        self.text.append(data)


def parse(path):
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def section_text(html_text, key):
    start = html_text.index(f'<section id="{key}">')
    return html_text[start : html_text.index("</section>", start)]


def test_card_has_every_section_and_embeds_every_figure(made):
    _, model_dir, bench = made
    (html_path,) = write_cards(model_dir, bench=bench)
    assert html_path == model_dir / "card.html"
    page = parse(html_path)
    assert page.sections == [key for key, _ in SECTIONS]
    assert page.scripts == 0 and not page.external
    raw = html_path.read_text(encoding="utf-8")
    assert "http://" not in raw and "https://" not in raw and "url(" not in raw and "@import" not in raw
    assert len(page.images) >= 2  # accuracy per context, population gain strip
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    for key in ("accuracy", "population", "robustness", "size", "fairness", "harm"):
        assert "not computed" not in section_text(raw, key), key  # everything was computed here
    md = (model_dir / "card.md").read_text(encoding="utf-8")
    assert [line[3:] for line in md.splitlines() if line.startswith("## ")] == [t for _, t in SECTIONS]
    assert "data:image" not in md


def test_card_numbers_come_from_the_files(made):
    from crop.bench.store import ResultStore
    from crop.report.stats import HARM_MARGIN, summarize_gain
    from crop.report.tables import performance

    _, model_dir, bench = made
    card = build_card(model_dir, __import__("crop.report.card", fromlist=["Bench"]).Bench.read(bench))
    summary = json.loads((model_dir / "summary.json").read_text())
    own = 100 * summary["scores"]["unseen: session 2"]["balanced_accuracy"]
    gen = 100 * summary["generic_scores"]["unseen: session 2"]["balanced_accuracy"]
    assert card.verdict.startswith("HARM" if own < gen - HARM_MARGIN else "no harm")
    assert f"{own:.2f} %" in card.verdict and f"{gen:.2f} %" in card.verdict
    perf = performance(ResultStore(bench / "results.jsonl").load(), "balanced_accuracy")
    population = next(s for s in card.sections if s.key == "population")
    row = population.tables[0].rows[0]
    assert row[0].startswith("Δ_P") and row[1] == summarize_gain(perf, "hapt-session:1", "crop", "generic").interval()
    assert population.tables[0].rows[1][1] == summarize_gain(perf, "hapt-session:1", "crop", "finetune").interval()
    robustness = next(s for s in card.sections if s.key == "robustness")
    certified = json.loads((model_dir / "certify.json").read_text())["results"]
    value = certified["unseen: session 2"]["verified@linf:0.01"]
    first = robustness.tables[0]
    assert f"{100 * value:.1f}" in first.rows[[r[0] for r in first.rows].index("verified@linf:0.01")]
    size = next(s for s in card.sections if s.key == "size").tables[0].rows
    total, nonzero, _ = count_weights(model_dir / "model.safetensors")
    assert size[0][1] == f"{total:,}" and size[1][1].startswith(f"{nonzero:,}")


def test_without_bench_sections_say_not_computed(made, tmp_path):
    _, model_dir, _ = made
    alone = tmp_path / "alone"
    shutil.copytree(model_dir, alone)
    (alone / "certify.json").unlink()
    write_cards(alone)
    raw = (alone / "card.html").read_text(encoding="utf-8")
    for key in ("population", "robustness", "fairness"):
        text = section_text(raw, key)
        assert "not computed" in text and "crop " in text, key
        assert "<table>" not in text and "<img" not in text, key  # nothing invented
    assert parse(alone / "card.html").sections == [key for key, _ in SECTIONS]
    md = (alone / "card.md").read_text(encoding="utf-8")
    assert md.count("> not computed") == 3
    # without a bench, the expectation is the one crop personalize recorded from the shipped
    # population evidence (other people of the benchmark)
    recorded = json.loads((alone / "summary.json").read_text())["expectation"]
    expect = section_text(raw, "expect")
    assert "expected unseen-context change" in expect and "probability of harm" in expect
    assert f"{recorded['change']:+.2f} pp" in expect and f"{100 * recorded['harm']:.0f} %" in expect


def test_one_card_per_model_and_out_directory(made, tmp_path):
    _, model_dir, _ = made
    for name in ("a", "b/c"):
        shutil.copytree(model_dir, tmp_path / "people" / name)
    (tmp_path / "people" / "b" / "notes.txt").write_text("not a model")
    assert find_models(tmp_path / "people") == [tmp_path / "people" / "a", tmp_path / "people" / "b" / "c"]
    written = write_cards(tmp_path / "people", out=tmp_path / "cards")
    assert written == [tmp_path / "cards" / "a.html", tmp_path / "cards" / "b-c.html"]
    assert (tmp_path / "cards" / "b-c.md").is_file()


def test_text_from_the_files_is_escaped(made, tmp_path):
    _, model_dir, _ = made
    odd = tmp_path / "odd"
    shutil.copytree(model_dir, odd)
    summary = json.loads((odd / "summary.json").read_text())
    summary["user"] = '<script>alert(1)</script><img src="http://example.org/x.png">'
    (odd / "summary.json").write_text(json.dumps(summary))
    write_cards(odd)
    page = parse(odd / "card.html")
    assert page.scripts == 0 and not page.external
    assert all(src.startswith("data:") for src in page.images)


def test_bad_directories_give_one_line_errors(made, tmp_path):
    _, model_dir, _ = made
    (tmp_path / "empty").mkdir()
    with pytest.raises(CropError, match="no personalized model found"):
        write_cards(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    for name in ("card.html", "card.md"):
        (broken / name).unlink(missing_ok=True)
    (broken / "summary.json").write_text("{not json")
    with pytest.raises(CropError, match="corrupt"):
        write_cards(broken)
    assert not (broken / "card.html").exists() and not (broken / "card.md").exists()
    with pytest.raises(CropError, match="no results.jsonl"):
        write_cards(model_dir, bench=tmp_path / "empty")


def test_count_weights_sees_zeros(tmp_path):
    import torch

    from crop.models import HAPTNet, save_model

    torch.manual_seed(0)
    net = HAPTNet()
    with torch.no_grad():
        for p in net.parameters():
            p[..., ::2] = 0
    path = save_model(net, tmp_path / "m.safetensors")
    total, nonzero, what = count_weights(path)
    assert what == "parameters" and total == sum(p.numel() for p in net.parameters())
    assert nonzero == sum(int((p != 0).sum()) for p in net.parameters()) < total


def test_card_of_a_model_personalized_on_own_data(tmp_path):
    import numpy as np
    import torch

    from crop.models import HAPTNet, save_model

    torch.manual_seed(0)
    generic = save_model(HAPTNet(), tmp_path / "generic.safetensors")
    rng = np.random.default_rng(0)
    n = 120
    X = rng.normal(size=(n, 6, 128)).astype(np.float32)
    y = np.arange(n) % 6
    X[np.arange(n), y, :] += 1.0
    np.savez(tmp_path / "me.npz", X=X, y=y, context=np.where(np.arange(n) < n // 2, "left", "right"))
    cfg = tmp_path / "fast.toml"
    cfg.write_text(FAST)
    out = tmp_path / "me"
    r = cli(
        "personalize",
        "--data",
        tmp_path / "me.npz",
        "--model",
        generic,
        "--available",
        "left",
        "--config",
        cfg,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    card = build_card(out)
    assert card.title.endswith(str(tmp_path / "me.npz"))
    assert [s.key for s in card.sections] == [key for key, _ in SECTIONS]
    who = {row[0]: row[1] for row in card.sections[0].tables[0].rows}
    from crop.report.card import sha256_of

    assert who["generic model sha256"] == sha256_of(generic)
    summary = json.loads((out / "summary.json").read_text())
    own = 100 * summary["scores"]["unseen: right"]["balanced_accuracy"]
    assert f"{own:.2f} %" in card.verdict


def test_crop_card_command(made, tmp_path):
    _, model_dir, bench = made
    r = cli("card", model_dir, "--bench", bench, "--out", tmp_path / "cards")
    assert r.exit_code == 0, r.output
    assert (
        "wrote" in r.output and (tmp_path / "cards" / "u2.html").is_file() and (tmp_path / "cards" / "u2.md").is_file()
    )
    assert parse(tmp_path / "cards" / "u2.html").sections == [key for key, _ in SECTIONS]
    (tmp_path / "empty").mkdir()
    for args, pattern in [
        ((tmp_path / "empty",), "no personalized model found"),
        ((tmp_path / "missing",), "not a directory"),
        ((model_dir, "--bench", tmp_path / "empty"), "no results.jsonl"),
    ]:
        r = cli("card", *args)
        assert r.exit_code == 2, r.output
        text = r.output.strip()
        assert len(text.splitlines()) == 1 and text.startswith("crop: error:") and pattern in text, text
        assert "Traceback" not in text
    assert not list((tmp_path / "empty").iterdir())
