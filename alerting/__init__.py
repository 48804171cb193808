"""Escalation: the detection rule (pure), incident state, and alert delivery sinks."""
