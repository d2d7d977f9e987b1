"""Errors that mean "qdoctor could not check this target" (exit 2, one clear line, no traceback)."""


class TargetError(Exception):
    """The target cannot be checked: missing file, syntax error, nothing to check, bad inputs...

    The message is one line, written for the user; the CLI prints it and exits 2.
    """


class NoModelError(TargetError):
    """The target defines no torch.nn.Module: when a directory is checked, such a file is a helper, not a model."""
