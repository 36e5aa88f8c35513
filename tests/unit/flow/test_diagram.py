"""Every label of ``ivr flow diagram`` must render: Mermaid refuses a quote inside a quoted label,
reads ``#...;`` as an entity and ``<...>`` as HTML, and cannot take ``end`` as a node id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr.flow.diagram import escape, mermaid
from ivr.flow.loader import check_paths, parse_flow

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"

# What a label may hold once escaped: no quote, no raw & < >, '#' only as an entity code; the
# label's own markup (<br/>, <i>...</i>) is the one HTML allowed.
_TEXT = r'(?:[^"&<>#]|#(?:quot|amp|lt|gt|35);)*'
LABEL = rf'"{_TEXT}(?:<br/><i>{_TEXT}</i>)?"'
ID = r"s\d+"
LINE = re.compile(
    rf"^(?:flowchart TD"
    rf"|  start\(\[{LABEL}\]\) --> {ID}"
    rf"|  {ID}\[{LABEL}\]"
    rf"|  {ID} -- {LABEL} --> {ID}"
    rf"|  {ID} -- else --> {ID}"
    rf"|  {ID} -\. failure \.-> {ID}"
    rf"|  {ID} --> {ID})$"
)


def bad_lines(chart: str) -> list[str]:
    return [line for line in chart.splitlines() if not LINE.match(line)]


@pytest.mark.parametrize("name", sorted(f.name for f in check_paths([DIALPLANS])[0]))
def test_every_shipped_flow_diagram_renders(name: str) -> None:
    flows = {f.name: f for f in check_paths([DIALPLANS])[0]}
    assert bad_lines(mermaid(flows[name])) == []


def test_quotes_entities_html_and_reserved_names_are_escaped() -> None:
    flow = parse_flow(
        """\
flow: tricky
start: end
hours:
  support: {timezone: UTC, mon-fri: "08:00-18:00"}
steps:
  end:
    branch:
      when:
        - if: open("support")
          next: say_it
      else: say_it
  say_it:
    say: 'Press <b>1</b> for "billing" & #1 support; #quot;'
""",
        "t.yaml",
    )
    chart = mermaid(flow)
    assert bad_lines(chart) == []
    assert '  s0 -- "open(#quot;support#quot;)" --> s1' in chart.splitlines()
    assert "Press #lt;b#gt;1#lt;/b#gt; for #quot;billing#quot; #amp; #35;1 su" in chart
    assert chart.splitlines()[1] == '  start(["tricky"]) --> s0'  # "end" is only a label


def test_escape_leaves_plain_words() -> None:
    assert escape("main_menu: How can we help?") == "main_menu: How can we help?"
