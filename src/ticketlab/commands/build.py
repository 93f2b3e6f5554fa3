"""From option values to a command's configs and options: the one path the CLI and sweeps share.

Option names: a config field's name, or `<section>_<field>` where an earlier section of the same
command has a field of that name (train's `lr` stays `lr`, CTS's is `cts_lr`); a command option's
field name; `preset` (a paper's recipe the given training options change); an alias. Values arrive
typed by a parser or from a TOML/YAML grid and are read as the command line reads them, so a sweep
names the same runs as the CLI.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass

from ticketlab.commands.spec import SECTION_ALIASES, SECTIONS, Command, Options, flag
from ticketlab.errors import TicketlabError
from ticketlab.recipes import preset

PRESET = "preset"


@dataclass(frozen=True)
class Slot:
    """Where one option's value goes. `section` None: the command's own options; `spec`: the dataclass
    field (None for --preset and aliases); `const`: what a bare alias flag sets; `alias_help`: an
    alias's help (None: hidden)."""
    dest: str
    section: str | None
    field: str
    kind: type
    spec: dataclasses.Field | None = None
    const: object = None
    alias_help: str | None = None

    @property
    def is_alias(self) -> bool:
        return self.spec is None and self.field != PRESET


def base_type(hint) -> type:
    """int for `int | None`, list for `list[str]`."""
    origin = typing.get_origin(hint)
    if origin is list:
        return list
    args = [t for t in typing.get_args(hint) if t is not type(None)]
    return args[0] if args and origin is not None else hint


@functools.cache
def slots(command: Command) -> dict[str, Slot]:
    """Every option of a command by name, in the order help lists them: sections, the command's own
    options (those shared by many commands last), aliases."""
    table: dict[str, Slot] = {}
    for section in command.sections:
        cls = SECTIONS[section]
        hints = typing.get_type_hints(cls)
        if section == "train" and section not in command.overrides:
            table[PRESET] = Slot(PRESET, section, PRESET, str)
        for f in dataclasses.fields(cls):
            if f.name not in command.skip.get(section, ()):
                dest = f"{section}_{f.name}" if f.name in table else f.name  # an earlier section has the name
                table[dest] = Slot(dest, section, f.name, base_type(hints[f.name]), f)
    hints = typing.get_type_hints(command.options)
    own = sorted(dataclasses.fields(command.options), key=lambda f: f.metadata["rank"])
    for f in own:
        assert f.name not in table, f"{command.name}: option {f.name} is also a config field"
        table[f.name] = Slot(f.name, None, f.name, base_type(hints[f.name]), f)
    for alias in [a for s in command.sections for a in SECTION_ALIASES.get(s, ())] + list(command.aliases):
        target = next(s for s in table.values() if (s.section, s.field) == (alias.section, alias.field))
        table[alias.name] = Slot(alias.name, alias.section, alias.field, bool if alias.const is not None else target.kind,
                                 const=alias.const, alias_help=alias.help)
    return table


def typed(value, kind: type):
    """A value as the command line reads its text: ints become floats for float options, numbers text
    for text options, lists comma-separated text (e.g. seeds = [0, 1] -> "0,1")."""
    if isinstance(value, bool) or value is None:
        return value
    if kind is float and isinstance(value, int):
        return float(value)
    if kind is str and isinstance(value, (int, float)):
        return str(value)
    if kind is str and isinstance(value, list):
        return ",".join(map(str, value))
    if kind is list:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return value


def build(command: Command, given: dict) -> tuple[dict, Options]:
    """The command's configs (a dict of the given fields for an `overrides` section) and options from the
    options given by name; everything not given takes its default. Raises TicketlabError on an unknown
    option, a missing required one or a value its config or options refuse."""
    table = slots(command)
    values: dict[str | None, dict] = {None: {}, **{s: {} for s in command.sections}}
    for name, value in given.items():
        slot = table.get(name)
        if slot is None:
            raise TicketlabError(f"ticketlab {command.name} has no option {flag(name)}")
        if slot.const is not None:
            if value is not True:
                raise TicketlabError(f"{flag(name)} is a bare flag; give it as true, or leave it out")
            value = slot.const
        values[slot.section][slot.field] = typed(value, slot.kind)
    own = values[None]
    missing = [f.name if f.metadata["positional"] else flag(f.name) for f in dataclasses.fields(command.options)
               if f.name not in own and f.default is dataclasses.MISSING]
    if missing:
        raise TicketlabError(f"ticketlab {command.name} needs {', '.join(missing)}")
    options = command.options(**own)
    configs = {}
    for section in command.sections:
        if section in command.overrides:
            configs[section] = values[section]
            continue
        name = values[section].pop(PRESET, None)
        start = preset(name) if name else command.defaults.get(section) or SECTIONS[section]()
        configs[section] = dataclasses.replace(start, **values[section])
    return configs, options
