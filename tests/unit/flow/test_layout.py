"""The studio's diagram: layers by distance from start, an edge for every way on, every label
escaped, and every step a box with its name and line for the page to click and overlay."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ivr.flow.layout import edges_of, flow_svg, layout
from ivr.flow.loader import load_flow_file, parse_flow

REPO = Path(__file__).resolve().parents[3]
SVG = "{http://www.w3.org/2000/svg}"

FLOW = """\
flow: tricky
start: hello
hours:
  support: {timezone: UTC, mon-sun: "00:00-24:00"}
steps:
  hello:
    say: 'Hi <there> & "welcome"'
    next: check
  check:
    branch:
      when:
        - if: open("support") and caller.contacts < 3
          next: menu
      else: bye
  menu:
    menu:
      prompt: Pick one
      options:
        pay: {dtmf: "1", say: pay, next: verify}
        back: {dtmf: "9", say: again, next: hello}
      on_failure: bye
  verify:
    invoke: verify_identity
    next: bye
  bye:
    hangup: {}
"""


def test_steps_sit_in_layers_by_their_distance_from_start() -> None:
    shape = layout(parse_flow(FLOW, "tricky.yaml"))
    layers = {n.id: n.layer for n in shape.nodes}
    assert layers == {"hello": 0, "check": 1, "menu": 2, "bye": 2, "verify": 3, "flow:verify_identity": 4}
    assert {n.id: n.line for n in shape.nodes}["menu"] == 15
    ys = {n.layer: n.y for n in shape.nodes}
    assert ys[0] < ys[1] < ys[2] < ys[3]


def test_edges_carry_what_an_admin_reads() -> None:
    flow = parse_flow(FLOW, "tricky.yaml")
    menu = [(e.target, e.label, e.dashed) for e in edges_of(flow.steps["menu"])]
    assert menu == [("verify", "1: pay", False), ("hello", "9: back", False), ("bye", "failure", True)]
    branch = [(e.target, e.label) for e in edges_of(flow.steps["check"])]
    assert branch == [("menu", 'open("support") and caller.contacts < 3'), ("bye", "else")]
    assert [(e.target, e.label) for e in edges_of(flow.steps["verify"])] == [
        ("flow:verify_identity", "invoke"),
        ("bye", ""),
    ]


def test_every_label_is_escaped_and_the_svg_is_well_formed() -> None:
    svg = flow_svg(parse_flow(FLOW, "tricky.yaml"))
    root = ET.fromstring(svg)  # raises on a quote, < or & that escaped the escaping
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert 'open("support") and caller.co…' in texts  # cut to fit, whole in the tooltip
    assert any(t.startswith('say: Hi <there> & "welco') for t in texts)
    titles = ["".join(t.itertext()) for t in root.iter(f"{SVG}title")]
    assert 'hello: say: Hi <there> & "welcome"' in titles
    assert "<there>" not in svg and "&lt;there&gt;" in svg


def test_every_step_is_a_box_with_its_name_and_line() -> None:
    flow = parse_flow(FLOW, "tricky.yaml")
    root = ET.fromstring(flow_svg(flow))
    boxes = {g.get("data-step"): g.get("data-line") for g in root.iter(f"{SVG}g") if g.get("data-step")}
    assert boxes == {name: str(step.line) for name, step in flow.steps.items()}
    refs = [g.get("data-flow") for g in root.iter(f"{SVG}g") if g.get("class") == "flow-ref"]
    assert refs == ["verify_identity"]


def test_a_step_name_cannot_break_out_of_its_attribute() -> None:
    flow = parse_flow(
        'flow: x\nstart: "a\\"><script>"\nsteps:\n  "a\\"><script>": {say: hi, next: "b&c"}\n  "b&c": {hangup: {}}\n',
        "x.yaml",
    )
    svg = flow_svg(flow)
    root = ET.fromstring(svg)
    assert {g.get("data-step") for g in root.iter(f"{SVG}g") if g.get("data-step")} == {'a"><script>', "b&c"}
    assert "<script>" not in svg


def test_unreached_steps_and_loops_back_are_drawn_too() -> None:
    flow = parse_flow(
        "flow: x\nstart: a\nsteps:\n  a: {menu: {prompt: p, options: {o: {dtmf: '1', say: o, next: a}}}}\n", "x.yaml"
    )
    shape = layout(flow)
    assert [(e.source, e.target) for e in shape.edges] == [("a", "a")]
    assert re.search(r'data-from="a" data-to="a"><path d="M\d+,\d+ C', flow_svg(flow))


def test_every_shipped_flow_draws() -> None:
    for path in sorted((REPO / "dialplans").glob("*.yaml")):
        flow = load_flow_file(path)
        root = ET.fromstring(flow_svg(flow))
        steps = {g.get("data-step") for g in root.iter(f"{SVG}g") if g.get("data-step")}
        assert steps == set(flow.steps), path.name


def test_an_edge_within_a_row_goes_under_it_not_through_its_neighbours() -> None:
    flow = parse_flow(
        "flow: x\nstart: m\nsteps:\n"
        "  m: {menu: {prompt: p, options: {a: {dtmf: '1', say: a, next: a}, b: {dtmf: '2', say: b, next: b},"
        " c: {dtmf: '3', say: c, next: c}}}}\n"
        "  a: {say: a, next: c}\n  b: {say: b, next: c}\n  c: {hangup: {}}\n",
        "x.yaml",
    )
    svg = flow_svg(flow)
    row = {n.id: n for n in layout(flow).nodes}
    assert row["a"].layer == row["c"].layer == 1
    path = re.search(r'data-from="a" data-to="c"><path d="M(\d+),(\d+) C\d+,(\d+) ', svg)
    assert path is not None
    assert int(path.group(2)) == row["a"].y + 50 and int(path.group(3)) > row["a"].y + 50  # from below, dips lower
