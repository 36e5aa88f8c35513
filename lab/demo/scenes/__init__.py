"""The demo's scenes, in the order they run. A new scene is one module here that registers itself
with ``@scene`` (lab.demo.registry) and one import line below."""

from lab.demo.scenes import browser_agent, desktop, handoff, nodes, returning, speech, studio, supervisor

__all__ = ["browser_agent", "desktop", "handoff", "nodes", "returning", "speech", "studio", "supervisor"]
