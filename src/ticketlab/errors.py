"""The one exception type for user mistakes: the CLI prints its message as one line and exits 2."""


class TicketlabError(Exception):
    """A problem with the user's input (data, options, files) that they can fix.

    The message must say what is wrong and how to fix it, in one line.
    """


def missing_extra(what: str, extra: str) -> TicketlabError:
    """The error for an optional package that is not installed, naming the extra that installs it:
    `what` says what needs it ("ONNX export needs the onnx and onnxscript packages")."""
    return TicketlabError(f"{what}: pip install 'ticketlab[{extra}]'")
