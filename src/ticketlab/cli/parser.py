"""The `ticketlab` argument parser, generated from the command registry: one subcommand per command,
one option per config field and per field of the command's options, every default shown once."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import shtab

from ticketlab import __version__
from ticketlab.cli.sweep_command import SWEEP
from ticketlab.commands.build import PRESET, Slot, slots
from ticketlab.commands.registry import COMMANDS as REGISTERED
from ticketlab.commands.spec import SECTIONS, Command, Options, arg, flag
from ticketlab.recipes import PRESETS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every default shown once: appended where the help does not already say it, never for unset options."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = getattr(action, "shown", None)  # options parse to nothing when not given: the default is kept here
        if "default" in text or shown in (None, "") or action.required or not action.option_strings:
            return text
        return f"{text} (default: %(shown)s)"


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other user mistake
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


def add_field(container, slot: Slot, shown) -> None:
    """One argument for a config field or an option field."""
    meta = slot.spec.metadata
    kwargs = {"help": escaped(meta["help"])}
    if meta.get("choices"):
        kwargs["choices"] = meta["choices"]
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    if meta.get("positional"):
        container.add_argument(slot.dest, nargs=meta.get("nargs"), **kwargs)
        return
    if slot.kind is bool:
        kwargs["action"] = "store_true" if meta.get("bare") else argparse.BooleanOptionalAction
    else:
        kwargs["type"] = slot.kind
    if slot.spec.default is dataclasses.MISSING:
        kwargs["required"] = True
    action = container.add_argument(flag(slot.dest), dest=slot.dest, **kwargs)
    if not meta.get("bare"):
        action.shown = shown


def add_command(subparsers, command: Command) -> None:
    # Nothing is filled in for options not given, so the namespace holds exactly what the user wrote.
    sub = subparsers.add_parser(command.name, help=command.help, description=command.description,
                                formatter_class=HelpFormatter, argument_default=argparse.SUPPRESS)
    groups = {}
    for section in command.sections:
        title = {"cts": "cts options (method cts)"}.get(section, f"{section} options")
        groups[section] = sub.add_argument_group(title + (" (default: the ticket's recipe)"
                                                          if section in command.overrides else ""))
    for slot in slots(command).values():
        if slot.field == PRESET:
            groups[slot.section].add_argument(
                "--preset", dest=PRESET, choices=sorted(PRESETS), metavar="NAME",
                help=escaped("start from a paper's recipe (the training options given here replace its values): "
                             + "; ".join(f"{name} = {p.source}" for name, p in PRESETS.items())))
        elif slot.is_alias:
            kwargs = {"action": "store_true"} if slot.const is not None else {"type": slot.kind}
            sub.add_argument(flag(slot.dest), dest=slot.dest, help=slot.alias_help or argparse.SUPPRESS, **kwargs)
        elif slot.section is None:
            add_field(sub, slot, slot.spec.default)
        else:
            overrides = slot.section in command.overrides
            start = command.defaults.get(slot.section) or SECTIONS[slot.section]()
            add_field(groups[slot.section], slot, None if overrides else getattr(start, slot.field))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ticketlab", formatter_class=HelpFormatter,
                    description="Find, test, compress and protect lottery tickets.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS.values():
        add_command(subparsers, command)
    return parser


# ---- completion: a command of the command line itself ---------------------------------------------

@dataclass(kw_only=True)
class CompletionOptions(Options):
    shell: str = arg(help="the shell to complete for", positional=True, choices=("bash", "zsh", "tcsh"))


def completion(configs: dict, options: CompletionOptions, log) -> dict:
    return {"script": shtab.complete(build_parser(), shell=options.shell)}


COMPLETION = Command("completion", "print a shell completion script (bash, zsh or tcsh)",
                     "Print a completion script generated from the command definitions, e.g. "
                     "`ticketlab completion bash > ~/.local/share/bash-completion/completions/ticketlab`.",
                     CompletionOptions, completion, lambda result, options: result["script"])

# The registry's commands and the two that belong to the command line: sweep (runs other commands) and completion.
COMMANDS: dict[str, Command] = {**REGISTERED, SWEEP.name: SWEEP, COMPLETION.name: COMPLETION}
