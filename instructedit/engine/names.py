"""Names the engine accepts, importable without torch (method declarations, the CLI, the page read them)."""

SCHEDULER_KINDS = ("ddim", "euler-ancestral", "euler", "dpm++", "lcm", "tcd")
"""The samplers ``make_scheduler`` builds from a model's own scheduler config."""
