"""The one exception type for user mistakes: the CLI prints its message as one line and exits 2."""


class TicketlabError(Exception):
    """A problem with the user's input (data, options, files) that they can fix.

    The message must say what is wrong and how to fix it, in one line.
    """
