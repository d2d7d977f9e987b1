"""Errors that mean "qdoctor could not check this target" (exit 2, one clear line, no traceback)."""


class TargetError(Exception):
    """The target cannot be checked: missing file, syntax error, nothing to check, bad inputs...

    The message is one line, written for the user; the CLI prints it and exits 2. ``partial`` is what loading had
    learnt before it stopped (a report's Target: its quoted tracebacks and statically read steps still give a report).
    """

    partial: object | None = None


class NoModelError(TargetError):
    """The target defines no torch.nn.Module: when a directory is checked, such a file is a helper, not a model."""


class ScriptFailedError(TargetError):
    """The script raised before defining any nn.Module. Loading records what it raised; the run layer adds the cause
    when it knows one (an API that a torch or torchao release moved: qdoctor.diagnose.flow_causes)."""

    def __init__(
        self,
        text: str,
        exception_message: str,
        module_name: str | None = None,
        explained: str = "",
        crash: object = None,
    ) -> None:
        """``text``: the line without a cause; ``explained``: the line with ``{hint}`` where the cause goes;
        ``crash``: what the script raised (a qdoctor.facts.CrashInfo; this module imports nothing of qdoctor), so
        that a quantization flow that failed is still reported as a diagnosis (qdoctor.run.check)."""
        self.exception_message, self.module_name, self.explained = exception_message, module_name, explained
        self.crash = crash
        super().__init__(text)


class NotAModuleError(TargetError, TypeError):
    """A model argument of the Python API (``qdoctor.check_model``) is not a ``torch.nn.Module``."""


class InputsDoNotFitError(TargetError, ValueError):
    """The example inputs are not tensors, or the model rejects them because of their shape or dtype (the message
    names the layer that rejected them)."""


class FloatSubjectError(TargetError, ValueError):
    """The model given to check is a float model (nothing quantized, no qconfig, no observers): there is nothing to
    diagnose. Pass the quantized model, with the float one as ``float_model``, or compare recipes on it."""


class OptionError(TargetError, ValueError):
    """An option of the Python API has a value it cannot take (an unknown rule code, ``fail_on="loud"``...)."""
