"""Hostile names in ``stowage compare`` reports (issue 17).

Everything a report shows from its input (the model's file and graph name, the target's and
levels' names, solver names, error messages quoting operator names, figure captions) is
untrusted.  The HTML page must stay inert: only the template's own tags, no event-handler
attribute, the text shown as written.  The Markdown page must carry no raw HTML and keep its
table cells.  The pictures must not break on mathtext (``$\\frac{$``) in a name.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from stowage.cli import main
from stowage.targets.hierarchy import Hierarchy, Level
from stowage.tools.report import (
    Capacity,
    Comparison,
    Figure,
    Run,
    autoescape_for,
    build_sections,
    md_escape,
    render_pages,
)
from tests.helpers import save

EVIL = "<script>alert(1)</script>\"onload=alert(2) '<img src=x onerror=alert(3)>&amp; `x` | y [z](javascript:1)"
#: A file name cannot hold "/", so the model file carries the opening half of the attack.
EVIL_FILE = 'x<script>alert(1)<img src=x onerror=alert(2)>"onload=alert(3)\'&.onnx'
#: Tags report.html.j2 itself writes; data must add none.
TEMPLATE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "dl", "dt", "dd", "p", "figure",
                 "img", "figcaption", "table", "tr", "th", "td", "details", "summary", "code"}


class _Page(HTMLParser):
    """Tags, attributes and text of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    return p


def assert_inert_html(page: str, *shown: str) -> None:
    p = parse(page)
    assert set(p.tags) <= TEMPLATE_TAGS, set(p.tags) - TEMPLATE_TAGS
    names = {name for name, _ in p.attrs}
    assert names <= {"lang", "charset", "class", "src", "alt"}, names
    assert all(v is None or not v.lower().lstrip().startswith("javascript:") for _, v in p.attrs)
    assert "<script" not in page.lower()
    text = "".join(p.text) + " ".join(v or "" for _, v in p.attrs)
    for s in shown:
        assert s in text, s  # shown as written, not dropped or mangled


def assert_inert_md(page: str) -> None:
    assert "<" not in page  # the template writes none; data's are entities
    assert any(line.startswith("| solver |") for line in page.splitlines())
    cells = None  # every row has as many cells as its own table's header
    for line in page.splitlines():
        if not line.startswith("|"):
            cells = None
        elif line.startswith("| ") and not line.startswith("|---"):
            n = len(re.findall(r"(?<!\\)\|", line))
            cells = n if cells is None else cells
            assert n == cells, line


# ---------------------------------------------------------------------------------------
# End to end: stowage compare with a hostile model file, graph, operators and target
# ---------------------------------------------------------------------------------------
def _hostile_model(folder: Path, graph_name: str) -> Path:
    nodes = [helper.make_node("Relu", ["x"], ["t"], name=EVIL + " relu"),
             helper.make_node("Relu", ["t"], ["y"], name=EVIL + " r2")]
    g = helper.make_graph(nodes, graph_name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
    return save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), folder / EVIL_FILE)


def test_compare_report_with_hostile_names_is_inert(tmp_path: Path, capsys) -> None:
    model = _hostile_model(tmp_path, graph_name="g $\\frac{$ " + EVIL)
    target = tmp_path / "evil.toml"
    target.write_text(
        'name = "<script>alert(\'t\')</script>\\"onload=x $\\\\undefined$"\n'
        'compute_level = "sram"\n[homes]\nweights = "dram"\ninputs = "dram"\noutputs = "dram"\n'
        '[[levels]]\nname = "sram"\ncapacity = "64KiB"\n[[levels]]\nname = "dram"\n'
    )
    out = tmp_path / "report"
    # 100 B is below M_R: the heuristic's error message quotes the hostile operator name.
    rc = main(["-q", "compare", str(model), "--target", str(target), "--capacity", "100,M_R",
               "--solvers", "naive,heuristic", "--time-limit", "2", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    page = (out / "report.html").read_text()
    assert_inert_html(page, EVIL_FILE, EVIL + " relu", "<script>alert('t')</script>\"onload=x")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;onload=alert(2)" in page  # the escaped form
    assert page.count('src="data:image/png;base64,') >= 4  # pictures drawn despite the mathtext
    md = (out / "report.md").read_text()
    assert_inert_md(md)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md


def test_templates_are_autoescaped() -> None:
    """The rule keys on the template's real names (``*.html.j2``)."""
    assert autoescape_for("report.html.j2") and autoescape_for("report.html") and autoescape_for("x.svg.j2")
    assert not autoescape_for("report.md.j2") and not autoescape_for(None)


# ---------------------------------------------------------------------------------------
# Fuzz: any text in any field (seeded, bounded, no drawing)
# ---------------------------------------------------------------------------------------
FRAGMENTS = ["<", ">", "&", '"', "'", "`", "|", "\\", "/", "=", "[", "]", "(", ")", "$", "\n", "\r", " ",
             "<script>", "</script>", "<!--", "-->", "<![CDATA[", "]]>", '"onload=', "onerror=", "javascript:",
             "&amp;", "&#60;", "&lt;", "{{", "}}", "{%", "%}", "\u2028", "\x00", "é", "名"]
hostile_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), min_size=1, max_size=8).map(
    "".join)


def _comparison(model: str, path: str, target: str, levels: tuple[str, str], solvers: list[str],
                errors: list[str]) -> Comparison:
    hier = Hierarchy(name=target, levels=(Level(levels[0], 4096), Level(levels[1], None)),
                     compute_level=levels[0], weights_home=levels[1], inputs_home=levels[1],
                     outputs_home=levels[1])
    caps = (Capacity("M_R", 1000), Capacity("2KiB", 2048))
    runs = tuple(Run(s, c, None, e, 0.1) for c in caps for s, e in zip(solvers, errors))
    return Comparison(model=model, model_path=path, target=hier, weights_in_compute_level=False,
                      element_bytes=1, time_limit=1.0, operators=2, buffers=3, m_r=1000, capacities=caps,
                      solvers=tuple(solvers), runs=runs)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(model=hostile_text, path=hostile_text, target=hostile_text, lv=st.tuples(hostile_text, hostile_text),
       solver=hostile_text, error=hostile_text, caption=hostile_text)
def test_fuzz_report_pages_are_inert(model: str, path: str, target: str, lv: tuple[str, str], solver: str,
                                     error: str, caption: str) -> None:
    if lv[0] == lv[1]:
        lv = (lv[0], lv[1] + "x")
    cmp = _comparison(model, path, target, lv, [solver, solver + "2"], [error, "e " + error])
    sections, _ = build_sections(cmp, with_occupancy=False)  # every run failed: nothing is drawn
    sections[0]["figures"] = [Figure("f.png", caption, b"\x89PNG")]
    curves = Figure("traffic_vs_capacity.png", caption, b"\x89PNG")
    pages = render_pages(cmp, sections, curves)
    # Text shown as written (HTML keeps whitespace inside text; compare without it).
    shown = [s for s in (model, target, solver, error) if s.strip() and "\r" not in s and "\x00" not in s]
    assert_inert_html(pages["report.html"])
    page_text = html.unescape(pages["report.html"])
    for s in shown:
        assert s in page_text
    assert_inert_md(pages["report.md"])
    for s in (model, target, solver, error):
        assert md_escape(s) in pages["report.md"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=st.text())
def test_fuzz_md_escape(text: str) -> None:
    out = md_escape(text)
    assert "<" not in out and ">" not in out and "\n" not in out and "\r" not in out
    assert not re.search(r"(?<!\\)(\\\\)*[|`\[\]]", out.replace("\\\\", ""))
    assert html.unescape(re.sub(r"\\(.)", r"\1", out)) == " ".join(text.split())


def test_hostile_replacement_of_a_real_target() -> None:
    """``Hierarchy`` accepts any names from Python: the report still escapes them."""
    cmp = _comparison("m", "p", "t", ("sram", "dram"), ["s"], ["boom"])
    cmp = replace(cmp, target=replace(cmp.target, name=EVIL))
    sections, _ = build_sections(cmp, with_occupancy=False)
    pages = render_pages(cmp, sections, Figure("c.png", EVIL, b"\x89PNG"))
    assert_inert_html(pages["report.html"], EVIL)
    assert_inert_md(pages["report.md"])
