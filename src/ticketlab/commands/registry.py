"""Every ticketlab command by name, in the order `ticketlab --help` lists them."""

from __future__ import annotations

from ticketlab.commands import deploy, info, layers, lth, ownership, pai, supertickets
from ticketlab.commands.spec import Command
from ticketlab.errors import TicketlabError

COMMANDS: dict[str, Command] = {command.name: command for family in (lth, pai, deploy, layers, supertickets, ownership,
                                                                     info) for command in family.COMMANDS}


def command(name: str) -> Command:
    if name not in COMMANDS:
        raise TicketlabError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    return COMMANDS[name]
