"""A flow as a Mermaid flowchart, for admins who would rather look than read YAML."""

from __future__ import annotations

from ivr.flow.model import Flow, Prompt
from ivr.flow.steps import BranchStep, GotoStep, InvokeStep, MenuStep, Step


def _label(step: Step) -> str:
    prompt = getattr(step, "prompt", None)
    words = f": {prompt.text[:40]}" if isinstance(prompt, Prompt) and prompt.text else ""
    if isinstance(step, InvokeStep):
        words = f": {step.flow}"
    if isinstance(step, GotoStep) and step.flow:
        words = f": flow {step.flow}"
    return f"{step.name}<br/><i>{step.KIND}{words}</i>".replace('"', "'")


def mermaid(flow: Flow) -> str:
    lines = ["flowchart TD", f'  start(["{flow.name}"]) --> {flow.start}']
    for step in flow.steps.values():
        lines.append(f'  {step.name}["{_label(step)}"]')
        if isinstance(step, MenuStep):
            for option in step.options:
                lines.append(f'  {step.name} -- "{option.key}: {option.id}" --> {option.next}')
            if step.on_failure:
                lines.append(f"  {step.name} -. failure .-> {step.on_failure}")
        elif isinstance(step, BranchStep):
            for condition, target, _ in step.cases:
                lines.append(f'  {step.name} -- "{condition.source}" --> {target}'.replace('"open(', '"open('))
            if step.otherwise:
                lines.append(f"  {step.name} -- else --> {step.otherwise}")
        else:
            for target, _ in step.targets():
                lines.append(f"  {step.name} --> {target}")
    return "\n".join(lines) + "\n"
