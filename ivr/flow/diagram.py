"""A flow as a Mermaid flowchart, for admins who would rather look than read YAML.

Why every label is escaped and every node has a made-up id: Mermaid refuses a quoted label with a
quote inside (a branch's ``open("support")``), reads ``#...;`` as an entity code and ``<...>`` as
HTML, and some words (``end``) cannot be node ids. So step names become ids ``s0``, ``s1``... and
their text goes in labels, where ``"``, ``#``, ``&``, ``<`` and ``>`` are written as Mermaid's
entity codes (``#quot;``...); only the label's own ``<br/>`` and ``<i>`` stay markup.
"""

from __future__ import annotations

from ivr.flow.model import Flow, Prompt
from ivr.flow.steps import BranchStep, GotoStep, InvokeStep, MenuStep, Step

_ENTITIES = {"#": "#35;", '"': "#quot;", "&": "#amp;", "<": "#lt;", ">": "#gt;"}


def escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label: entity codes for what Mermaid would read itself."""
    return "".join(_ENTITIES.get(ch, ch) for ch in " ".join(text.split()))


def _label(step: Step) -> str:
    prompt = getattr(step, "prompt", None)
    words = f": {prompt.text[:40]}" if isinstance(prompt, Prompt) and prompt.text else ""
    if isinstance(step, InvokeStep):
        words = f": {step.flow}"
    if isinstance(step, GotoStep) and step.flow:
        words = f": flow {step.flow}"
    return f"{escape(step.name)}<br/><i>{escape(step.KIND + words)}</i>"


def mermaid(flow: Flow) -> str:
    ids = {name: f"s{i}" for i, name in enumerate(flow.steps)}

    def node(name: str) -> str:
        return ids.get(name) or ids.setdefault(name, f"s{len(ids)}")

    lines = ["flowchart TD", f'  start(["{escape(flow.name)}"]) --> {node(flow.start)}']
    for step in flow.steps.values():
        me = node(step.name)
        lines.append(f'  {me}["{_label(step)}"]')
        if isinstance(step, MenuStep):
            for option in step.options:
                if option.next:
                    lines.append(f'  {me} -- "{escape(f"{option.key}: {option.id}")}" --> {node(option.next)}')
            if step.on_failure:
                lines.append(f"  {me} -. failure .-> {node(step.on_failure)}")
        elif isinstance(step, BranchStep):
            for condition, target, _ in step.cases:
                lines.append(f'  {me} -- "{escape(condition.source)}" --> {node(target)}')
            if step.otherwise:
                lines.append(f"  {me} -- else --> {node(step.otherwise)}")
        else:
            for target, _ in step.targets():
                lines.append(f"  {me} --> {node(target)}")
    return "\n".join(lines) + "\n"
