"""Routing: which queue, skill and priority a contact goes to (pure), and the queue widening rule."""
