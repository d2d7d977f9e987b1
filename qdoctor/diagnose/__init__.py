"""Facts -> findings. Pure: imports no torch and runs no model. The registry, the helpers that point a finding at
the user's code, the crash and flow-failure causes, and one module per rule in rules/."""
