"""`ticketlab COMMAND`: parse, build the command's configs and options, run it, print its result.

User mistakes end as one line on stderr and exit code 2; with --json a command prints exactly one
JSON object on stdout and sends progress and logs to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from ticketlab import checks, distributed, progress
from ticketlab.cli.parser import COMMANDS, build_parser
from ticketlab.commands.build import build
from ticketlab.commands.failures import describe


def log(message: str) -> None:
    progress.write_line(message)  # whole lines, above any progress bars; rank 0 only under torchrun


def emit(command, options, result: dict) -> None:
    if getattr(options, "json", False):  # strict JSON: NaN and infinities (e.g. a diverged loss) become null
        print(json.dumps(checks.strict_json(result), sort_keys=True, allow_nan=False))
    else:
        print(command.render(result, options))


def check_batch_size(configs: dict) -> None:
    """A training batch must split evenly over the ranks of a distributed run, refused before any run directory exists."""
    train = configs.get("train")
    if train is not None:
        distributed.check_batch_size(train.get("batch_size") if isinstance(train, dict) else train.batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare `ticketlab`: what it can do
        parser.print_help()
        return 0
    given = vars(parser.parse_args(argv))
    command = COMMANDS[given.pop("command")]
    options = None
    try:
        # Under torchrun every rank runs the command (data-parallel training); only rank 0 prints results.
        distributed.init_from_env()
        configs, options = build(command, given)
        check_batch_size(configs)
        with contextlib.ExitStack() as stack:
            if not distributed.is_main():
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            result = command.execute(configs, options, log)
            emit(command, options, result)
            sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
            return command.status(result)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as other tools do
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - describe() says which failures a user can act on
        # A failed write on an open file names no path: name the place the command writes to.
        message = describe(exc, getattr(options, "runs_dir", None) or getattr(options, "out", None))
        if message is None:
            raise
        print(f"ticketlab: error: {message}", file=sys.stderr)
        return 2
