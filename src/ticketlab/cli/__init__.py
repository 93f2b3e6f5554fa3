"""The `ticketlab` command line: a thin client of the command registry (ticketlab.commands).

`parser` generates the argument parser from the registry (and adds the command line's own `sweep`
and `completion`), `app` runs one command and prints its result or its one-line error.
"""

from ticketlab.cli.app import main
from ticketlab.cli.parser import HelpFormatter, Parser, build_parser

__all__ = ["HelpFormatter", "Parser", "build_parser", "main"]
