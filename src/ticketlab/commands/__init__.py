"""ticketlab's commands declared as data, for any front end: the CLI (ticketlab.cli) and sweeps (ticketlab.sweeps).

`spec` says what a command is (config sections, an options dataclass, run and render functions),
`build` turns option values into the command's configs and options, `registry` holds every command
by name, and one module per family (lth, pai, deploy, layers, supertickets, ownership, info)
declares its commands. Nothing here parses a command line or prints.
"""
