"""A flow drawn as SVG on the server: layers by distance from the start step, one box per step.

Why our own layout rather than a JavaScript graph library: the studio must draw offline (no CDN),
the flows are small (the largest shipped one has under thirty steps), and a pure function from a
``Flow`` to text can be tested with literal inputs, escaping included. Steps sit in layers by
their distance (in edges) from ``start``, in the order a breadth-first walk meets them; steps no
path reaches go in one last layer. Edges are the step's gotos (``next``), menu options
(``key: option``), branch conditions, failure paths (dashed), and invokes or gotos into another
flow, which point at a box for that flow.

Every step's box is a ``<g>`` with ``data-step`` (the step's name: per-step figures are overlaid
by it) and ``data-line`` (the step's line in the YAML, where a click takes the editor). Every
text that came from the file is XML-escaped, so a label such as ``open("support")``, ``<`` or
``&`` reads as written and can never open an element or an attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ivr.flow.model import Flow, Prompt
from ivr.flow.steps import BranchStep, GotoStep, InvokeStep, MenuStep, Step
from ivr.flow.steps.base import RetryingStep

WIDTH = 200
HEIGHT = 50
GAP_X = 40
GAP_Y = 70
MARGIN = 20
#: Characters of a label drawn in a box or on an edge; the whole text is in the box's tooltip.
LABEL_CHARS = 30


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # a step's name, or ``flow:<name>`` for another flow
    label: str = ""
    dashed: bool = False


@dataclass(frozen=True)
class Node:
    id: str  # the step's name, or ``flow:<name>`` for another flow
    title: str
    subtitle: str
    line: int
    layer: int
    x: int
    y: int
    kind: str  # the step's kind, or ``flow`` for another flow

    @property
    def is_step(self) -> bool:
        return self.kind != "flow"


@dataclass(frozen=True)
class Layout:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def _summary(step: Step) -> str:
    prompt = getattr(step, "prompt", None)
    words = f": {prompt.text}" if isinstance(prompt, Prompt) and prompt.text else ""
    if isinstance(step, InvokeStep):
        words = f": {step.flow}"
    if isinstance(step, GotoStep) and step.flow:
        words = f": flow {step.flow}"
    return step.KIND + words


def edges_of(step: Step) -> list[Edge]:
    """Where ``step`` can go, labelled as an admin reads it."""
    out: list[Edge] = []
    if isinstance(step, MenuStep):
        out += [Edge(step.name, o.next, f"{o.key}: {o.id}") for o in step.options if o.next]
    elif isinstance(step, BranchStep):
        out += [Edge(step.name, target, condition.source) for condition, target, _ in step.cases]
        if step.otherwise:
            out.append(Edge(step.name, step.otherwise, "else"))
    elif isinstance(step, InvokeStep):
        out.append(Edge(step.name, f"flow:{step.flow}", "invoke", dashed=True))
    elif isinstance(step, GotoStep) and step.flow:
        out.append(Edge(step.name, f"flow:{step.flow}", f"goto {step.target}" if step.target else "goto"))
    failure = step.on_failure if isinstance(step, RetryingStep) else getattr(step, "on_failure", None)
    known = {e.target for e in out}
    for target, _ in step.targets():
        if target in known:
            continue
        known.add(target)
        dashed = target == failure and target != step.next
        out.append(Edge(step.name, target, "failure" if dashed else "", dashed=dashed))
    return out


def layout(flow: Flow) -> Layout:
    """Boxes in layers by distance from ``flow.start``; edges between them."""
    edges = [e for step in flow.steps.values() for e in edges_of(step)]
    out_of: dict[str, list[str]] = {}
    for e in edges:
        out_of.setdefault(e.source, []).append(e.target)
    layer: dict[str, int] = {}
    order: list[str] = []
    todo = [flow.start] if flow.start in flow.steps else []
    if todo:
        layer[flow.start] = 0
    while todo:
        current = todo.pop(0)
        order.append(current)
        for target in out_of.get(current, []):
            if target not in layer and (target in flow.steps or target.startswith("flow:")):
                layer[target] = layer[current] + 1
                todo.append(target)
    last = max(layer.values(), default=-1) + 1
    for name in flow.steps:  # steps no path reaches from start: one last layer, in file order
        if name not in layer:
            layer[name] = last
            order.append(name)
    for e in edges:  # another flow only an unreached step goes to
        if e.target not in layer and e.target.startswith("flow:"):
            layer[e.target] = layer[e.source] + 1
            order.append(e.target)
    rows: dict[int, list[str]] = {}
    for name in order:
        rows.setdefault(layer[name], []).append(name)
    widest = max((len(r) for r in rows.values()), default=1)
    width = 2 * MARGIN + widest * WIDTH + (widest - 1) * GAP_X
    nodes: list[Node] = []
    for depth in sorted(rows):
        row = rows[depth]
        row_width = len(row) * WIDTH + (len(row) - 1) * GAP_X
        left = (width - row_width) // 2
        for i, name in enumerate(row):
            x, y = left + i * (WIDTH + GAP_X), MARGIN + depth * (HEIGHT + GAP_Y)
            step = flow.steps.get(name)
            if step is None:
                flow_name = name.removeprefix("flow:")
                nodes.append(Node(name, flow_name, "another flow", 0, depth, x, y, "flow"))
            else:
                nodes.append(Node(name, name, _summary(step), step.line, depth, x, y, step.KIND))
    depth = max(rows, default=0) + 1
    height = 2 * MARGIN + depth * HEIGHT + (depth - 1) * GAP_Y
    known = {n.id for n in nodes}
    return Layout(tuple(nodes), tuple(e for e in edges if e.target in known), width, height)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _edge_path(a: Node, b: Node) -> tuple[str, float, float]:
    """The SVG path of an edge and where its label goes: down to a later layer, a curve under the
    row to a step of the same layer, out to the right and back to an earlier layer or itself."""
    x1: float = a.x + WIDTH / 2
    y1: float = a.y + HEIGHT
    if b.layer > a.layer:
        x2: float = b.x + WIDTH / 2
        y2: float = b.y
        mid = (y1 + y2) / 2
        return f"M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}", (x1 + x2) / 2, mid
    if b.layer == a.layer and b is not a:  # a neighbour in the same row: under the row, not through it
        x2, y2 = b.x + WIDTH / 2, b.y + HEIGHT
        low = max(y1, y2) + GAP_Y / 2
        return f"M{x1:.0f},{y1:.0f} C{x1:.0f},{low:.0f} {x2:.0f},{low:.0f} {x2:.0f},{y2:.0f}", (x1 + x2) / 2, low - 4
    x1, y1 = a.x + WIDTH, a.y + HEIGHT / 2
    x2, y2 = b.x + WIDTH, b.y + HEIGHT / 2
    bulge = max(x1, x2) + GAP_X + 10 * abs(a.layer - b.layer)
    return (
        f"M{x1:.0f},{y1:.0f} C{bulge:.0f},{y1:.0f} {bulge:.0f},{y2:.0f} {x2:.0f},{y2:.0f}",
        bulge - GAP_X / 2,
        (y1 + y2) / 2,
    )


def render_svg(shape: Layout, flow_name: str) -> str:
    """The layout as one ``<svg>`` element; every text from the file is escaped."""
    by_id = {n.id: n for n in shape.nodes}
    width = shape.width + 2 * GAP_X  # room for the loops drawn out to the right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flow-diagram" width="{width}" height="{shape.height}" '
        f'viewBox="0 0 {width} {shape.height}" role="img" aria-label="flow {escape(flow_name)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    for e in shape.edges:
        a, b = by_id[e.source], by_id[e.target]
        path, lx, ly = _edge_path(a, b)
        cls = "edge dashed" if e.dashed else "edge"
        parts.append(
            f'<g class="{cls}" data-from="{escape(e.source)}" data-to="{escape(e.target)}">'
            f'<path d="{path}" marker-end="url(#arrow)"/>'
            + (f'<text x="{lx:.0f}" y="{ly:.0f}">{escape(_short(e.label))}</text>' if e.label else "")
            + "</g>"
        )
    for n in shape.nodes:
        if n.is_step:
            attrs = f'class="step kind-{escape(n.kind)}" data-step="{escape(n.id)}" data-line="{n.line}" tabindex="0"'
        else:
            attrs = f'class="flow-ref" data-flow="{escape(n.title)}"'
        parts.append(
            f"<g {attrs}><title>{escape(n.title)}: {escape(n.subtitle)}</title>"
            f'<rect x="{n.x}" y="{n.y}" width="{WIDTH}" height="{HEIGHT}" rx="6"/>'
            f'<text class="name" x="{n.x + 10}" y="{n.y + 20}">{escape(_short(n.title))}</text>'
            f'<text class="kind" x="{n.x + 10}" y="{n.y + 38}">{escape(_short(n.subtitle))}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def flow_svg(flow: Flow) -> str:
    return render_svg(layout(flow), flow.name)
