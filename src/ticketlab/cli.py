"""The `ticketlab` command line: one subcommand per job; options come from the config dataclasses.

User mistakes end as one line on stderr and exit code 2; with --json a command prints exactly one
JSON object on stdout and sends progress and logs to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import sys
import typing
from pathlib import Path

from ticketlab import checks
from ticketlab.config import (DataConfig, LayerConfig, ModelConfig, PaiConfig, PruneConfig, TrainConfig,
                              validate_density, validate_layers, validate_pai, validate_prune, validate_train)
from ticketlab.errors import TicketlabError

from ticketlab.cts.config import CtsConfig  # noqa: E402
from ticketlab.supertickets.config import SuperConfig, validate_super  # noqa: E402

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig, "pai": PaiConfig,
            "cts": CtsConfig, "layers": LayerConfig, "supertickets": SuperConfig}
# Option names that would collide with the training recipe's get their own flags.
RENAMED = {"cts": {"lr": "search_lr", "batch_size": "search_batch_size"}}
TORCHSCRIPT_HELP = ("allow a TorchScript file; only for files you trust: loading TorchScript runs code from the file "
                    "(safetensors and ONNX files hold only data)")
MAX_WORKERS = 1024  # parallel processes: more than any machine here has cores, so a larger number is a typo
MAX_POINTS = 1001  # stability: points along the interpolation path (each evaluates the test set)
MAX_REPEATS = 100_000  # profile: timed calls per measurement
MAX_PROFILE_BATCH = 65_536  # profile: examples per timed batch (one batch is allocated in memory)

# The main job's recipe: LeNet-300-100 on Fashion-MNIST with the LTH paper's optimizer (Adam 1.2e-3,
# batch 60), shortened so that 8 levels and their controls finish in a few minutes on 2 CPU cores.
DEMO_DEFAULTS = {
    "train": TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps="6000it", eval_every="100it"),
    "prune": PruneConfig(levels=7, prune_fraction=0.2, strategy="global"),
}
# SuperTickets' recipe: SGD with momentum, as for the paper's supernets, short enough for a CPU.
SUPERTICKETS_DEFAULTS = {
    "model": ModelConfig(model="supernet"),
    "train": TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-5, batch_size=128, steps="10ep"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every default shown once: appended where the help does not already say it, never for unset options."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, "") or default is argparse.SUPPRESS or action.required
                or not action.option_strings or isinstance(action, argparse._StoreConstAction)):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other user mistake
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def add_config_options(parser: argparse.ArgumentParser, section: str, defaults=None, skip=(), overrides=False) -> None:
    """One option per config field. With `overrides`, options default to unset (only given ones apply)."""
    cls = SECTIONS[section]
    defaults = defaults or cls()
    hints = typing.get_type_hints(cls)
    title = {"cts": "cts options (method cts)"}.get(section, f"{section} options")
    group = parser.add_argument_group(title + (" (default: the ticket's recipe)" if overrides else ""))
    if section == "train" and not overrides:
        from ticketlab.recipes import PRESETS
        group.add_argument("--preset", default=None, choices=sorted(PRESETS), metavar="NAME",
                           help="start from a paper's recipe (the training options given here replace its values): "
                                + "; ".join(f"{name} = {p.source}" for name, p in PRESETS.items()).replace("%", "%%"))
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        dest = RENAMED.get(section, {}).get(f.name, f.name)
        flag = "--" + dest.replace("_", "-")
        default = argparse.SUPPRESS if overrides else getattr(defaults, f.name)
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                               help=f.metadata["help"].replace("%", "%%"))
            continue
        base = next(t for t in typing.get_args(kind) if t is not type(None)) if typing.get_args(kind) else kind
        group.add_argument(flag, dest=dest, type=base, default=default, choices=f.metadata.get("choices"),
                           help=f.metadata["help"].replace("%", "%%"))


def configs_from_args(args: argparse.Namespace, sections: list[str]) -> dict[str, object]:
    configs = {}
    for s in sections:
        dests = {f.name: RENAMED.get(s, {}).get(f.name, f.name) for f in dataclasses.fields(SECTIONS[s])}
        configs[s] = SECTIONS[s](**{name: getattr(args, dest) for name, dest in dests.items() if hasattr(args, dest)})
    return configs


def add_common_options(parser: argparse.ArgumentParser, runs: bool = True, replicates: bool = False) -> None:
    if runs:
        parser.add_argument("--seed", type=int, default=0, help="seed for initialization, data order and pruning")
        parser.add_argument("--runs-dir", default="runs", help="where run directories are created")
    if replicates:
        parser.add_argument("--seeds", default=None, help="replicate seeds, e.g. 0,1,2 (overrides --seed); "
                            "results are aggregated as mean ± std")
        parser.add_argument("--workers", type=int, default=None, help="parallel processes for replicate seeds "
                            "(default: one per seed up to the number of cores; threads are shared out among them)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object with the results on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_power_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--power-watts", type=float, default=65.0,
                        help="power figure for the energy estimate (training time × watts), an assumption")


def emit(args: argparse.Namespace, result: dict, text: str) -> None:
    if args.json:  # strict JSON: NaN and infinities (e.g. a diverged loss) become null
        print(json.dumps(checks.strict_json(result), sort_keys=True, allow_nan=False))
    else:
        print(text)


def log(message: str) -> None:
    print(message, file=sys.stderr)


def announce(recipe: TrainConfig) -> None:
    """The training recipe in effect, on stderr, once the command's work starts (its first run opened)."""
    from ticketlab import runs
    fields = ", ".join(f"{f.name} {getattr(recipe, f.name)}" for f in dataclasses.fields(TrainConfig)
                       if f.name != "device" and getattr(recipe, f.name) not in ("", None))
    runs.on_work_start[:] = [lambda: log(f"recipe: {fields}")]


def given_flags(argv: list[str]) -> set[str]:
    """The long options written on the command line (what a --preset must not override)."""
    return {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}


def apply_preset(args: argparse.Namespace, argv: list[str]) -> None:
    """--preset NAME: the preset's recipe for every training option not given on the command line."""
    name = getattr(args, "preset", None)
    if not name:
        return
    from ticketlab.recipes import preset
    recipe, given = preset(name), given_flags(argv)
    for f in dataclasses.fields(TrainConfig):
        if hasattr(args, f.name) and "--" + f.name.replace("_", "-") not in given and \
                "--no-" + f.name.replace("_", "-") not in given:
            setattr(args, f.name, getattr(recipe, f.name))


# ---- commands -------------------------------------------------------------------------------

def seeds_of(args) -> list[int]:
    from ticketlab.lth.aggregate import parse_seeds
    return parse_seeds(args.seeds) if args.seeds is not None else [args.seed]


def cmd_train(args) -> int:
    from ticketlab.runtime import checked_data, finished, run_train
    configs = configs_from_args(args, ["data", "model", "train"])
    validate_train(configs["train"])
    if not finished(args.runs_dir, "train", configs, [args.seed]):
        checked_data(configs)
    announce(configs["train"])
    result = run_train(configs, args.seed, args.runs_dir, quiet=args.quiet or args.json, log=log)
    summary = result["summary"]
    emit(args, result, f"test accuracy {summary['test_accuracy']:.4f}, early-stop iteration "
                       f"{summary['early_stop_iteration']}; run in {result['run_dir']}")
    return 0


def cmd_imp(args, kind: str = "imp") -> int:
    from ticketlab.runtime import checked_data, finished
    from ticketlab.lth.jobs import run_imp_job
    from ticketlab.lth.controls import CONTROL_KINDS
    from ticketlab.lth.imp import imp_levels_keep_weights
    from ticketlab.lth.report import level_table, load_run
    configs = configs_from_args(args, ["data", "model", "train", "prune"])
    validate_train(configs["train"])
    validate_prune(configs["prune"])
    controls = tuple(c for c in args.controls.split(",") if c) if kind == "imp" else ("random-reinit",)
    unknown = [c for c in controls if c not in CONTROL_KINDS]
    if unknown:
        raise TicketlabError(f"unknown control kind(s) {unknown}; known: {', '.join(CONTROL_KINDS)}")
    seeds = seeds_of(args)
    if not finished(args.runs_dir, kind, configs, seeds):
        _, model = checked_data(configs, {"--rewind-step": configs["prune"].rewind_step})
        imp_levels_keep_weights(configs["prune"], model, configs["model"].model)
    announce(configs["train"])
    result = run_imp_job(kind, configs, seeds, args.runs_dir, quiet=args.quiet or args.json, log=log,
                         controls=controls, workers=args.workers)
    text = level_table(load_run(result["run_dir"], seeds)) + f"\n\nrun directory: {result['run_dir']}"
    if "report" in result:
        text += f"\nreport: {result['report']}\nplot: {result['plot']}"
    emit(args, result, text)
    return 0


def cmd_control(args) -> int:
    from ticketlab.lth.jobs import run_control_job
    seeds = seeds_of(args) if args.seeds is not None else None
    run = Path(args.run)
    if run.name.startswith("seed-") and not run.name[5:].isdigit():
        raise TicketlabError(f"{run} is not a seed folder (seed-<number>); give runs/<kind>-<hash> or .../seed-<s>")
    config_file = (run.parent if run.name.startswith("seed-") else run) / "config.json"
    if config_file.exists():  # open_existing_run reads it: refuse a damaged one here, by name
        stored = checks.read_json_file(config_file, "run config")
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict) or \
                not all(isinstance(v, dict) for v in stored["config"].values()):
            raise TicketlabError(f"{config_file} is not a ticketlab run config; give runs/<kind>-<hash>")
    result = run_control_job(args.run, args.kind, args.levels, seeds, args.data_root, args.quiet or args.json,
                             args.workers)
    rows = [f"seed {r['seed']} level {r['level']} ({100 * r['density']:.2f}% weights): {args.kind} "
            f"{r['test_accuracy']:.4f} vs ticket {r['ticket_test_accuracy']:.4f}, early stop {r['early_stop_iteration']}"
            for r in result["controls"]]
    emit(args, result, "\n".join(rows))
    return 0


def cmd_stability(args) -> int:
    from ticketlab.lth.stability import run_stability
    checks.integer("--points", args.points, 3, MAX_POINTS)
    if args.rewind_step is not None:
        checks.length(args.rewind_step, "rewind-step")
    result = run_stability(args.ticket, args.rewind_step, args.runs_dir, args.seed, args.points, args.data_root,
                           args.quiet or args.json)
    emit(args, result, f"error barrier from rewind step {result['rewind_step']}: {100 * result['barrier']:.2f} "
                       f"percentage points (test error along the path: "
                       f"{', '.join(f'{100 * e:.2f}' for e in result['test_errors'])}); plot {result['plot']}")
    return 0


def cmd_report(args) -> int:
    from ticketlab.lth.aggregate import parse_levels
    from ticketlab.lth.report import load_run, write_report
    runs = [load_run(path) for path in args.runs]
    curves = None
    if args.curves is not None:
        curves = parse_levels(args.curves, [r["level"] for r in runs[0].levels])
    result = write_report(runs, args.out, args.title, curve_levels=curves, html=args.html)
    result["runs"] = [str(r.run_dir) for r in runs]
    emit(args, result, f"report: {result['report']}")
    return 0


def validate_cts(cfg) -> None:
    from ticketlab.cts import validate_config
    validate_config(cfg)


def cmd_prune(args) -> int:
    from ticketlab.runtime import checked_data
    from ticketlab.pai.jobs import check_pai_request
    from ticketlab.pai.jobs import check_method, prune_seed
    from ticketlab.runs import open_run
    from ticketlab.ticket import read_metadata
    configs = configs_from_args(args, ["data", "model", "train", "pai", "cts"])
    validate_train(configs["train"])
    validate_pai(configs["pai"])
    validate_cts(configs["cts"])
    check_method(configs["pai"].method)
    if args.at == "init" and configs["pai"].rewind_step not in ("0it", "0ep", "0"):
        raise TicketlabError("--at init and --rewind-step conflict; give one of them")
    data, model = checked_data(configs, {"--rewind-step": configs["pai"].rewind_step})
    check_pai_request(configs, data, model, configs["pai"].method, configs["pai"].density)
    announce(configs["train"])
    open_run(args.runs_dir, "prune", configs)
    path = prune_seed(args.seed, configs, data, args.runs_dir, args.quiet or args.json)
    meta = read_metadata(path)
    result = {"ticket": str(path), "run_dir": str(path.parent), "method": meta["method"], "density": meta["density"],
              "layers": meta["layers"], "collapsed_layers": meta["collapsed_layers"], "search_cost": meta["search_cost"]}
    collapsed = f"; layer collapse: {', '.join(meta['collapsed_layers'])}" if meta["collapsed_layers"] else ""
    emit(args, result, f"{meta['method']} ticket at density {meta['density']:.5f}: {path}{collapsed}")
    return 0


def cmd_train_ticket(args) -> int:
    from ticketlab.runtime import load_data_config
    from ticketlab.pai.jobs import run_train_ticket
    from ticketlab.ticket import load_ticket, recorded_config
    ticket = load_ticket(args.ticket)
    if "train_config" not in ticket.info or "data_config" not in ticket.info:
        raise TicketlabError(f"{args.ticket} records no training recipe; give one with the train options")
    train_cfg = dataclasses.replace(recorded_config(ticket.info, "train_config", TrainConfig, args.ticket),
                                    **{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)})
    validate_train(train_cfg)
    data_cfg = recorded_config(ticket.info, "data_config", DataConfig, args.ticket)
    if args.data_root:
        data_cfg = dataclasses.replace(data_cfg, data_root=args.data_root)
    announce(train_cfg)
    result = run_train_ticket(Path(args.ticket), train_cfg, lambda: load_data_config(data_cfg), args.runs_dir,
                              args.quiet or args.json)
    s = result["summary"]
    emit(args, result, f"test accuracy {s['test_accuracy']:.4f}, early-stop iteration {s['early_stop_iteration']} "
                       f"(test accuracy there {s['early_stop_test_accuracy']:.4f}); trained ticket {result['ticket']}")
    return 0


def cmd_pai(args) -> int:
    from ticketlab.runtime import checked_data
    from ticketlab.pai.jobs import check_pai_request
    from ticketlab.lth.aggregate import parse_seeds
    from ticketlab.runtime import default_workers
    from ticketlab.pai.jobs import run_pai_sweep
    configs = configs_from_args(args, ["data", "model", "train", "pai", "cts"])
    validate_train(configs["train"])
    validate_cts(configs["cts"])
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        densities = [float(d) for d in args.densities.split(",") if d.strip()]
    except ValueError:
        raise TicketlabError(f"bad --densities {args.densities!r}: give numbers in (0, 1] separated by commas") from None
    for density in densities:
        validate_density(density, "--densities")
    validate_pai(configs["pai"])
    seeds = parse_seeds(args.seeds)
    if not methods or not densities:
        raise TicketlabError("give at least one method (--methods snip,grasp) and one density (--densities 0.1)")
    for name, values in (("--methods", methods), ("--densities", densities)):
        if len(set(values)) != len(values):
            raise TicketlabError(f"{name} {getattr(args, name[2:])} lists a value twice; give each once")
    from ticketlab.pai.jobs import check_method
    for method in methods:
        check_method(method)
    data, model = checked_data(configs, {"--rewind-step": configs["pai"].rewind_step})
    for method in methods:
        for density in densities:
            check_pai_request(configs, data, model, method, density, "--densities")
    announce(configs["train"])
    result = run_pai_sweep(configs, methods, densities, seeds, args.runs_dir, args.quiet or args.json,
                           args.workers or default_workers(seeds), log)
    lines = [f"{'method':12s} {'density':>9s} {'test acc':>17s} {'early stop':>15s}  collapsed layers"]
    for r in result["results"]:
        lines.append(f"{r['method']:12s} {r['density']:9.5f} {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} "
                     f"{r['early_stop_iteration']:8.0f} ± {r['early_stop_iteration_std']:4.0f}  "
                     f"{', '.join(r['collapsed_layers']) or '—'}")
    emit(args, result, "\n".join(lines))
    return 0


def check_sanity_inputs(configs: dict, schedule: str | None) -> None:
    from ticketlab.runtime import checked_data
    from ticketlab.lth.imp import imp_levels_keep_weights
    from ticketlab.pai.jobs import check_method, check_pai_request
    from ticketlab.pai.sanity import IMP_METHODS, imp_schedule
    pai = configs["pai"]
    if pai.method not in IMP_METHODS:
        check_method(pai.method)
        if schedule is not None:
            raise TicketlabError("--imp-schedule applies to --method imp or ltr; drop it")
    data, model = checked_data(configs, {"--rewind-step": pai.rewind_step})
    if pai.method in IMP_METHODS:
        imp_levels_keep_weights(PruneConfig(schedule=imp_schedule(pai.density, schedule)), model,
                                       configs["model"].model)
    else:
        check_pai_request(configs, data, model, pai.method, pai.density)


def check_power(watts: float) -> None:
    checks.positive("--power-watts", watts)


def cmd_sanity(args) -> int:
    from ticketlab.lth.aggregate import parse_seeds
    from ticketlab.runtime import default_workers
    from ticketlab.pai.sanity import run_sanity, sanity_table
    configs = configs_from_args(args, ["data", "model", "train", "pai", "cts"])
    validate_train(configs["train"])
    validate_pai(configs["pai"])
    validate_cts(configs["cts"])
    seeds = parse_seeds(args.seeds)
    check_sanity_inputs(configs, args.imp_schedule)
    announce(configs["train"])
    result = run_sanity(configs, seeds, args.runs_dir, args.quiet or args.json, args.workers or default_workers(seeds),
                        schedule=args.imp_schedule)
    emit(args, result, sanity_table(result))
    return 0


def cmd_export(args) -> int:
    from ticketlab.deploy.export import export_ticket
    result = export_ticket(args.ticket, args.format, args.out, half=args.half, weights=args.weights)
    emit(args, result, f"wrote {result['out']}: {result['format']}{' fp16' if result['half'] else ''}, "
                       f"{result['bytes']:,} bytes, {result['parameters']:,} stored parameters")
    return 0


def cmd_infer(args) -> int:
    from ticketlab.deploy.infer import run_inference
    result = run_inference(args.file, args.dataset, args.data_root, args.test_subset, args.batch_size, args.path,
                           torchscript=args.torchscript)
    paths = ", ".join(f"{name} {d['path']}" for name, d in result["linear_paths"].items()) or "as stored"
    emit(args, result, f"test accuracy {result['test_accuracy']:.4f} on {result['examples']} {result['dataset']} "
                       f"examples ({result['kind']}, {result['examples_per_second']:,.0f} examples/s at batch "
                       f"{result['batch_size']}; linear layers: {paths})")
    return 0


def cmd_profile(args) -> int:
    from ticketlab.deploy.profile import profile_table, profile_ticket
    try:
        batches = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        batches = ()
    if not batches or min(batches) < 1 or args.repeats < 1:
        raise TicketlabError(f"bad --batch-sizes {args.batch_sizes!r} or --repeats {args.repeats}: give positive integers such as 1,64,256")
    if max(batches) > MAX_PROFILE_BATCH or len(set(batches)) != len(batches):
        raise TicketlabError(f"bad --batch-sizes {args.batch_sizes!r}: give distinct sizes of at most {MAX_PROFILE_BATCH:,}")
    checks.integer("--repeats", args.repeats, 1, MAX_REPEATS)
    result = profile_ticket(args.ticket, batches, args.repeats)
    emit(args, result, profile_table(result))
    return 0


def structured_table(result: dict) -> str:
    def pm(key, scale=100.0, spec=".2f"):
        return f"{scale * result[key]:{spec}} ± {scale * (result[key + '_std'] or 0):{spec}}"
    lines = [f"{result['kind']} tickets over seeds {result['seeds']} (run {result['run_dir']})",
             f"  test accuracy      {pm('test_accuracy')} %   (dense {pm('dense_test_accuracy')} %)",
             f"  parameters         {result['ticket_parameters']:,.0f} vs {result['dense_parameters']:,.0f} dense "
             f"({pm('parameters_saved')} % saved)",
             f"  FLOPs per example  {result['ticket_flops']:,.0f} vs {result['dense_flops']:,.0f} dense ({pm('flops_saved')} % saved)",
             f"  conv filters       {result['ticket_conv_filters']:,.0f} vs {result['dense_conv_filters']:,.0f} dense",
             f"  training time      {result['ticket_training_seconds']:.1f} s vs {result['dense_training_seconds']:.1f} s dense "
             f"(speedup {pm('training_speedup', 1.0)}×, measured)",
             f"  energy (estimate)  {result['ticket_energy_wh_estimate']:.3f} Wh vs {result['dense_energy_wh_estimate']:.3f} Wh "
             f"dense, assuming {result['power_watts_assumed']:g} W"]
    return "\n".join(lines + [f"  ticket (seed {s}): {t}" for s, t in zip(result["seeds"], result["tickets"])])


def cmd_layers(args) -> int:
    from ticketlab.runtime import checked_data, default_workers
    from ticketlab.layers.jobs import run_structured
    configs = configs_from_args(args, ["data", "model", "train", "layers"])
    validate_train(configs["train"])
    validate_layers(configs["layers"])
    seeds = seeds_of(args)
    check_power(args.power_watts)
    checked_data(configs)
    announce(configs["train"])
    result = run_structured("layers", configs, seeds, args.runs_dir, args.quiet or args.json,
                            args.workers or default_workers(seeds), args.power_watts)
    emit(args, result, structured_table(result))
    return 0


def cmd_filters(args) -> int:
    from ticketlab.runtime import default_workers
    from ticketlab.layers.jobs import filter_configs, run_structured
    from ticketlab.ticket import load_ticket
    check_power(args.power_watts)
    layer = load_ticket(args.match_ticket)
    info = layer.info
    if "original_architecture" not in info:
        raise TicketlabError(f"{args.match_ticket} is not a layer ticket; give one written by `ticketlab layers`")
    data = DataConfig(**info["data_config"])
    if args.data_root:
        data = dataclasses.replace(data, data_root=args.data_root)
    base = {"data": data, "model": ModelConfig(model=info["original_architecture"]["name"]),
            "train": TrainConfig(**info["train_config"])}
    configs = filter_configs(base, args.match_ticket, args.criterion)
    seeds = seeds_of(args)
    result = run_structured("filters", configs, seeds, args.runs_dir, args.quiet or args.json,
                            args.workers or default_workers(seeds), args.power_watts)
    emit(args, result, structured_table(result))
    return 0


def supertickets_text(result: dict) -> str:
    def pm(key):
        return f"{100 * result[key]:.2f} ± {100 * (result[key + '_std'] or 0):.2f} %"
    lines = [f"{result['method']} at density {result['target_density']:g} over seeds {result['seeds']} (run {result['run_dir']})",
             f"  test accuracy, found      {pm('test_accuracy')}"]
    if result.get("retrained_test_accuracy") is not None:
        lines.append(f"  test accuracy, retrained  {pm('retrained_test_accuracy')}")
    lines += [f"  FLOPs per example         {result['flops'] / 1e6:.2f} M at the mask, {result['architecture_flops'] / 1e6:.2f} M "
              f"dense shrunk architecture, {result['supernet_flops'] / 1e6:.2f} M supernet",
              f"  parameters                {result['live_parameters']:,.0f} live of {result['parameters']:,.0f}",
              f"  training examples         {result['train_examples']:,.0f}"]
    return "\n".join(lines + [f"  ticket (seed {s}): {t}" for s, t in zip(result["seeds"], result["tickets"])])


def cmd_supertickets(args) -> int:
    from ticketlab.runtime import checked_data, default_workers
    from ticketlab.supertickets.jobs import run_supertickets
    configs = configs_from_args(args, ["data", "model", "train", "supertickets"])
    validate_train(configs["train"])
    validate_super(configs["supertickets"])
    seeds = seeds_of(args)
    checked_data(configs)
    announce(configs["train"])
    result = run_supertickets(configs, seeds, args.runs_dir, args.quiet or args.json, args.workers or default_workers(seeds))
    emit(args, result, supertickets_text(result))
    return 0


def cmd_transfer(args) -> int:
    from ticketlab.runtime import checked_data, default_workers
    from ticketlab.supertickets.jobs import run_transfer
    configs = configs_from_args(args, ["data", "train"])
    validate_train(configs["train"])
    seeds = seeds_of(args)
    checked_data(configs, data_config=configs["data"])
    announce(configs["train"])
    result = run_transfer(args.ticket, configs, seeds, args.runs_dir, args.quiet or args.json,
                          args.workers or default_workers(seeds))
    emit(args, result, f"transfer of {args.ticket} to {result['dataset']}: test accuracy "
                       f"{100 * result['test_accuracy']:.2f} ± {100 * (result['test_accuracy_std'] or 0):.2f} % "
                       f"at density {result['density']:.4f}, {result['flops'] / 1e6:.2f} MFLOPs per example "
                       f"(run {result['run_dir']})")
    return 0


def cmd_frontier(args) -> int:
    from ticketlab.supertickets.frontier import frontier_table, write_frontier
    result = write_frontier(args.runs, args.out)
    emit(args, result, frontier_table(result["points"]) + f"\nplot: {result['plot']}")
    return 0


def cmd_robustness(args) -> int:
    from ticketlab.layers.jobs import robustness_job
    result = robustness_job(args.tickets, args.dense, args.data_root, args.seed)
    labels = [f"T{i + 1}" for i in range(len(result["tickets"]))]
    lines = [f"{label}: {path}" for label, path in zip(labels, result["tickets"])] + [f"dense: {result['dense']}"]
    lines.append(f"{'corruption':16s} {'severity':>8s} {'dense':>8s} "
                 + " ".join(f"{label:>8s} {'Δ':>7s}" for label in labels))
    for row in result["rows"]:
        lines.append(f"{row['corruption']:16s} {row['severity']:8d} {100 * row['dense']:8.2f} "
                     + " ".join(f"{100 * acc:8.2f} {100 * (acc - row['dense']):+7.2f}" for acc in row["tickets"]))
    emit(args, result, "\n".join(lines))
    return 0


def cmd_sweep(args) -> int:
    from ticketlab.sweep import run_sweep, sweep_table
    summary = run_sweep(args.grid, args.engine, args.runs_dir, args.workers, args.address, log)
    emit(args, summary, sweep_table(summary) + f"\nreport: {summary.get('report')}")
    return 0 if summary["failed"] == 0 else 1


def cmd_methods(args) -> int:
    from ticketlab.pai import PAI_METHODS
    rows = [(name, info.description, info.bn_mode or "—") for name, info in PAI_METHODS.items()]
    emit(args, {"methods": [{"name": n, "description": d, "bn_mode": b} for n, d, b in rows]},
         "\n".join(f"{n:12s} {d} [BatchNorm while scoring: {b}]" for n, d, b in rows))
    return 0


def cmd_show(args) -> int:
    from ticketlab.ticket import read_metadata, load_ticket
    load_ticket(args.ticket)  # validates the whole file, not only its header
    meta = read_metadata(args.ticket)
    meta.pop("mask_shapes", None)
    lines = [f"ticket {args.ticket}",
             f"  model {meta['architecture']['name']} on {meta.get('dataset')}, method {meta.get('method')}, "
             f"level {meta.get('level')}, seed {meta.get('seed')}, rewind step {meta.get('rewind_step')}",
             f"  density {meta['density']:.4f} ({meta['kept']} of {meta['prunable']} prunable weights)"]
    lines += [f"    {name:40s} {d:.4f}" for name, d in meta["layers"].items()]
    metrics = meta.get("metrics") or {}
    if metrics:
        lines.append(f"  test accuracy {metrics.get('test_accuracy')}, early-stop iteration {metrics.get('early_stop_iteration')}")
    emit(args, meta, "\n".join(lines))
    return 0


def cmd_completion(args) -> int:
    import shtab
    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def cmd_models(args) -> int:
    from ticketlab.models import describe_models
    rows = describe_models()
    emit(args, {"models": [{"name": n, "description": d} for n, d in rows]},
         "\n".join(f"{n:24s} {d}" for n, d in rows))
    return 0


def cmd_datasets(args) -> int:
    from ticketlab.data import DATASETS
    rows = [(name, entry.description) for name, entry in DATASETS.items()]
    emit(args, {"datasets": [{"name": n, "description": d} for n, d in rows]},
         "\n".join(f"{n:18s} {d}" for n, d in rows))
    return 0


# ---- ownership: keygen, sign, verify, attack (ticketlab.ownership) ----------------------------

def train_overrides(args) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}


def cmd_keygen(args) -> int:
    from ticketlab.ownership.jobs import keygen_job
    result = keygen_job(args.out)
    emit(args, result, f"wrote key {result['key']} (mode 0600, fingerprint {result['fingerprint']}); keep it secret")
    return 0


def cmd_sign(args) -> int:
    from ticketlab.ownership.jobs import sign_job
    result = sign_job(args.ticket, args.key, args.out, args.claim, bits=args.bits, carriers=args.carriers,
                      triggers=args.triggers, per_batch=args.triggers_per_batch, significance=args.significance,
                      overrides=train_overrides(args), data_root=args.data_root, quiet=args.quiet or args.json)
    unsigned = result["unsigned_test_accuracy"]
    emit(args, result, f"signed {result['bits']} bits into {', '.join(result['carriers'])} ({result['killed_units']} units "
                       f"killed, as many weights switched on elsewhere) and {result['triggers']} triggers; test accuracy "
                       f"{result['test_accuracy']:.4f}" + (f" (unsigned {unsigned:.4f})" if unsigned is not None else "")
                       + f"\nsigned ticket: {result['ticket']}\nclaim: {result['claim']} (commitment {result['commitment']})")
    return 0


def cmd_verify(args) -> int:
    from ticketlab.ownership.jobs import verify_job
    if args.torchscript and not args.blackbox:
        raise TicketlabError("--torchscript goes with --blackbox (white-box verification reads weights from safetensors)")
    result = verify_job(args.suspect, args.key, args.claim, args.blackbox, torchscript=args.torchscript)
    verdict = "VERIFIED" if result["verified"] else "NOT VERIFIED"
    if result["mode"] == "white-box":
        detail = f"{result['agreeing_bits']} of {result['bits']} signature bits agree"
    else:
        detail = f"trigger accuracy {result['trigger_accuracy']:.3f} (chance {result['chance']:.3f})"
    commitment = "" if result["commitment_ok"] else "; the key does not match the claim's commitment"
    emit(args, result, f"{verdict}: {detail}, p = {result['p_value']:.3g} (significance {result['significance']:g}){commitment}")
    return 0 if result["verified"] else 1


def cmd_attack(args) -> int:
    from ticketlab.ownership.jobs import attack_job
    result = attack_job(args.signed, args.kind, args.strength, args.out, seed=args.seed, keep_mask=args.keep_mask,
                        scale=args.scale, overrides=train_overrides(args), data_root=args.data_root,
                        quiet=args.quiet or args.json)
    emit(args, result, f"{args.kind} at strength {result['strength']}: test accuracy {result['test_accuracy']:.4f}, "
                       f"density {result['density']:.4f}; attacked model {result['ticket']}")
    return 0


def add_ownership_commands(command) -> None:
    from ticketlab.ownership.attacks import DEFAULT_DENSIFY_SCALE, KINDS
    from ticketlab.ownership.claim import DEFAULT_SIGNIFICANCE
    from ticketlab.ownership.triggers import DEFAULT_TRIGGERS, PER_BATCH

    sub = command("keygen", cmd_keygen, "create an owner's secret key file (32 random bytes, mode 0600)",
                  "Write a new secret key for signing tickets. Keep it private; a key file is never overwritten.")
    sub.add_argument("--out", required=True, help="key file to create")
    add_common_options(sub, runs=False)

    sub = command("sign", cmd_sign, "embed the owner's keyed signature and trigger set in a ticket, and retrain it",
                  "White-box: n bits from HMAC-SHA256(key, ticket id) forced into units of the carrier layers (conv: "
                  "kernels; linear: groups of 4 weights), every layer's density kept exactly. Black-box: m key-derived "
                  "trigger inputs learned during the retraining from θ_k. Writes the signed ticket and a claim file "
                  "(no key, no bits) holding a commitment to key, ticket and time.")
    sub.add_argument("ticket", help="ticket file to sign")
    sub.add_argument("--key", required=True, help="the owner's key file (ticketlab keygen)")
    sub.add_argument("--out", required=True, help="signed ticket file to write")
    sub.add_argument("--claim", default=None, help="claim file to write (default: OUT with .claim.json)")
    sub.add_argument("--bits", type=int, default=None, help="signature bits n (default: 256, or the carriers' candidate units if fewer)")
    sub.add_argument("--carriers", default=None, help="comma-separated carrier layers, e.g. hidden.0,hidden.1 (default: "
                     "the largest hidden conv layers of a conv net, linear layers of an MLP; never the output layer)")
    sub.add_argument("--triggers", type=int, default=DEFAULT_TRIGGERS, help="trigger inputs m (0 = white-box only)")
    sub.add_argument("--triggers-per-batch", type=int, default=PER_BATCH, help="triggers mixed into each training batch")
    sub.add_argument("--significance", type=float, default=DEFAULT_SIGNIFICANCE, help="decision level stored in the claim")
    add_config_options(sub, "train", overrides=True)
    sub.add_argument("--data-root", default=None, help="folder holding datasets, if not where the ticket's run found them")
    add_common_options(sub, runs=False)

    sub = command("verify", cmd_verify, "test whether a suspect model carries the owner's signature (exit 0 verified, 1 not)",
                  "White-box: align the suspect's units to the claim, read liveness from weight magnitudes, count the "
                  "signature bits that agree and report the one-sided binomial p-value (null agreement 1/2). "
                  "--blackbox: only the suspect's predicted labels on the key's trigger set (null: the most common "
                  "trigger label's frequency). Verified iff the key matches the claim and p <= its significance.")
    sub.add_argument("suspect", help="ticket file or safetensors state_dict (with --blackbox: also a compact, dense, "
                     "TorchScript or ONNX export)")
    sub.add_argument("--key", required=True, help="the owner's key file")
    sub.add_argument("--claim", required=True, help="the claim file sign wrote")
    sub.add_argument("--blackbox", action="store_true", help="use only predicted labels on the trigger set")
    sub.add_argument("--torchscript", action="store_true", help=TORCHSCRIPT_HELP)
    add_common_options(sub, runs=False)

    sub = command("attack", cmd_attack, "attack a signed ticket (fine-tune, prune, densify, permute, forge) and measure it",
                  "Write the attacked model as a ticket file and report its test accuracy. --strength per kind:\n"
                  "  finetune         epochs of further training (default 10) at --lr (default: the ticket's recipe);\n"
                  "                   --keep-mask fixes the mask, --no-keep-mask trains every weight\n"
                  "  prune-magnitude  fraction of each layer's remaining weights removed, smallest first (default 0.5)\n"
                  "  prune-random     fraction of each layer's remaining weights removed at random (default 0.5)\n"
                  "  densify          fraction of each layer's dead weights switched on with random signs at\n"
                  "                   --scale x the layer's median alive |w| (default 1)\n"
                  "  permute          fraction of each hidden layer's units shuffled, next layer's inputs to\n"
                  "                   match: the same function (default 1)\n"
                  "  forge            bits of the forger's own signature (default: as many as the carriers allow),\n"
                  "                   embedded with a new key (OUT.forger.key, OUT.forger.claim.json) and retrained\n"
                  "                   with the ticket's recipe (train options apply)")
    sub.add_argument("signed", help="signed ticket file")
    sub.add_argument("--kind", required=True, help=", ".join(KINDS))
    sub.add_argument("--strength", type=float, default=None, help="attack strength (see above; default per kind)")
    sub.add_argument("--out", required=True, help="attacked ticket file to write")
    sub.add_argument("--keep-mask", action=argparse.BooleanOptionalAction, default=True,
                     help="finetune: keep the mask fixed (else every weight trains)")
    sub.add_argument("--scale", type=float, default=DEFAULT_DENSIFY_SCALE, help="densify: value size relative to the layer's median alive |w|")
    sub.add_argument("--seed", type=int, default=0, help="seed of the attack's random choices and data order")
    add_config_options(sub, "train", overrides=True)
    sub.add_argument("--data-root", default=None, help="folder holding datasets, if not where the ticket's run found them")
    add_common_options(sub, runs=False)

# ---- end of ownership commands ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ticketlab", formatter_class=HelpFormatter,
                    description="Find, test, compress and protect lottery tickets.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__import__('ticketlab').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name, handler, help, description):
        sub = commands.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("demo", lambda a: cmd_imp(a, "demo"), "the main job: an IMP winning ticket of LeNet-300-100 on Fashion-MNIST with reinit controls",
                  "Iterative magnitude pruning with reset to initialization, 7 levels at 20% (down to 21% of "
                  "weights), a random-reinitialization control at every level, a table, report.md and a plot.")
    for section in ("data", "model", "train", "prune"):
        add_config_options(sub, section, DEMO_DEFAULTS.get(section))
    add_common_options(sub, replicates=True)

    sub = command("train", cmd_train, "train a dense network", "Train a dense network with the given recipe; "
                  "writes metrics, checkpoints and a density-1 ticket into a resumable run directory.")
    for section in ("data", "model", "train"):
        add_config_options(sub, section)
    add_common_options(sub)

    sub = command("imp", cmd_imp, "iterative magnitude pruning (LTH; LTR with --rewind-step)",
                  "Train, prune a fraction of the surviving weights by magnitude, rewind the survivors to θ_k, "
                  "repeat. Each level writes a ticket file.")
    for section in ("data", "model", "train", "prune"):
        add_config_options(sub, section)
    sub.add_argument("--controls", default="", help="controls to train at every level, comma-separated: "
                     "random-reinit, random-reinit-sign, shuffle-layerwise, random-global")
    add_common_options(sub, replicates=True)

    sub = command("control", cmd_control, "train controls of an existing IMP run",
                  "Train a control for chosen levels of an IMP run with the run's own recipe, rewind point and "
                  "data order: random-reinit (fresh weights), random-reinit-sign (fresh magnitudes, signs of θ_k), "
                  "shuffle-layerwise (each layer's mask permuted), random-global (random mask, same count).")
    sub.add_argument("run", help="run directory, runs/<kind>-<hash> (all its seeds) or .../seed-<s>")
    sub.add_argument("--kind", required=True, help="random-reinit, random-reinit-sign, shuffle-layerwise or random-global")
    sub.add_argument("--levels", default="all", help="levels to control, e.g. 0-5,8")
    sub.add_argument("--data-root", default=None, help="folder holding datasets, if not where the run found them")
    add_common_options(sub, runs=False, replicates=True)
    sub.set_defaults(seed=None)

    sub = command("stability", cmd_stability, "instability analysis: error barrier between two copies trained from θ_k",
                  "Train two copies of a ticket (or a dense net's density-1 ticket from `train`) from θ_k with "
                  "different data orders and measure the test-error barrier along the linear path between them.")
    sub.add_argument("ticket", help="ticket file")
    sub.add_argument("--rewind-step", default=None, help="k (e.g. 500it or 2ep); default: the ticket's own rewind point")
    sub.add_argument("--points", type=int, default=11, help="points along the interpolation path, ends included")
    sub.add_argument("--data-root", default=None, help="folder holding datasets, if not where the ticket's run found them")
    add_common_options(sub)

    sub = command("report", cmd_report, "tables and plots combining runs and their controls",
                  "Write report.md and PNG plots (accuracy and early-stopping iteration vs percent of weights "
                  "remaining, training curves) for any number of runs, mean ± std over their seeds.")
    sub.add_argument("runs", nargs="+", help="run directories (runs/<kind>-<hash>)")
    sub.add_argument("--out", required=True, help="folder to write the report into")
    sub.add_argument("--title", default="Lottery tickets", help="report title")
    sub.add_argument("--curves", default=None, help="levels whose training curves are plotted (default: first, middle, last)")
    sub.add_argument("--html", action="store_true", help="also write a self-contained report.html")
    add_common_options(sub, runs=False)

    sub = command("prune", cmd_prune, "prune at initialization (or at θ_k) with one method; writes a ticket",
                  "Score every prunable weight of θ₀ (or of θ_k after k iterations of dense training) with a "
                  "pruning-at-initialization method and keep exactly density·d weights (see `ticketlab methods`).")
    for section in ("data", "model", "train", "pai", "cts"):
        add_config_options(sub, section)
    sub.add_argument("--at", choices=("init",), default=None, help="score at initialization (same as --rewind-step 0it)")
    add_common_options(sub)

    sub = command("cts", cmd_prune, "Concrete Ticket Search (CTS, CTS-KL): a ticket by optimizing the mask",
                  "Train one logit per prunable weight (weights frozen at θ_k) through a binary Concrete relaxation "
                  "on the reverse KL to the dense net (--objective kl, CTS-KL) or the task loss (CTS), with "
                  "GradBalance holding the expected density at 1.1·κ·d; keep exactly the top κ·d logits.")
    for section in ("data", "model", "train"):
        add_config_options(sub, section)
    add_config_options(sub, "pai", skip=("method", "score_batches", "score_batch_size", "iterations", "min_per_layer"))
    add_config_options(sub, "cts")
    sub.set_defaults(method="cts", at=None)
    add_common_options(sub)

    sub = command("train-ticket", cmd_train_ticket, "train a ticket with the recipe it records (or one given)",
                  "Train any ticket file from its rewind step with the recipe stored in it; train options given "
                  "here replace the stored ones. Same metrics as imp.")
    sub.add_argument("ticket", help="ticket file")
    add_config_options(sub, "train", overrides=True)
    sub.add_argument("--data-root", default=None, help="folder holding datasets, if not where the ticket's run found them")
    add_common_options(sub)

    sub = command("pai", cmd_pai, "run pruning-at-initialization methods across densities and seeds",
                  "Prune and train every method at every density for every seed (each a resumable prune run) "
                  "and print accuracy mean ± std and layer collapse.")
    for section in ("data", "model", "train"):
        add_config_options(sub, section)
    add_config_options(sub, "pai", skip=("method", "density"))
    add_config_options(sub, "cts")
    sub.add_argument("--methods", default="snip,grasp,synflow", help="comma-separated methods (cts included)")
    sub.add_argument("--densities", default="0.1,0.036,0.012", help="comma-separated densities")
    sub.add_argument("--seeds", default="0", help="comma-separated seeds")
    sub.add_argument("--workers", type=int, default=None, help="parallel processes for seeds (default: up to the cores)")
    add_common_options(sub)

    sub = command("sanity", cmd_sanity, "sanity checks: ticket vs layer-wise shuffle, reinit and inversion",
                  "Train a method's ticket and its ablations (layer-wise shuffle, reinitialization, inversion by "
                  "the method's own score) over seeds; an ablation passes when it loses more than two pooled "
                  "seed-standard-deviations of test accuracy. --method also takes imp, ltr and cts.")
    for section in ("data", "model", "train", "pai", "cts"):
        add_config_options(sub, section)
    sub.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (≥ 2 for a verdict)")
    sub.add_argument("--workers", type=int, default=None, help="parallel processes for seeds (default: up to the cores)")
    sub.add_argument("--imp-schedule", default=None, help="imp/ltr only: density schedule of the IMP run, containing "
                     "--density (default: 20%% per level down to --density)")
    add_common_options(sub)

    sub = command("export", cmd_export, "write a ticket as a compact file, a shrunk dense model, TorchScript or ONNX",
                  "compact: packed mask bits + live values (lossless; --half stores them in float16). dense: the "
                  "network with dead neurons and channels removed physically, as a safetensors state_dict. "
                  "torchscript / onnx: that shrunk network for deployment (onnx needs pip install 'ticketlab[onnx]').")
    sub.add_argument("ticket", help="ticket file")
    sub.add_argument("--format", required=True, choices=("compact", "dense", "torchscript", "onnx"))
    sub.add_argument("--out", required=True, help="file to write")
    sub.add_argument("--half", action="store_true", help="compact only: store the live values in float16")
    sub.add_argument("--weights", default="auto", choices=("auto", "trained", "init"),
                     help="trained weights, θ_k, or auto = trained when the ticket has them")
    add_common_options(sub, runs=False)

    sub = command("infer", cmd_infer, "test accuracy of a ticket or export, on the fastest path",
                  "Evaluate a ticket, compact, dense, TorchScript or ONNX file on a test set; each Linear layer runs "
                  "on a CSR sparse kernel when that is measured faster at the batch size, else dense.")
    sub.add_argument("file", help="ticket file or exported model")
    sub.add_argument("--dataset", default=None, help="dataset (default: the one the file records)")
    sub.add_argument("--data-root", default=None, help="folder holding datasets")
    sub.add_argument("--test-subset", type=int, default=None, help="only the first N test examples")
    sub.add_argument("--batch-size", type=int, default=256, help="inference batch size")
    sub.add_argument("--path", default="auto", choices=("auto", "csr", "dense"),
                     help="linear-layer kernels: auto = the fastest of dense and CSR, measured per layer")
    sub.add_argument("--torchscript", action="store_true", help=TORCHSCRIPT_HELP)
    add_common_options(sub, runs=False)

    sub = command("profile", cmd_profile, "size, FLOPs and speed of a ticket against its dense original",
                  "Parameters, non-zeros, FLOPs per example (live weights only), the file size of every export "
                  "format, and latency/throughput (median after warm-up) of the dense original, the masked ticket, "
                  "the shrunk network and the sparse path.")
    sub.add_argument("ticket", help="ticket file")
    sub.add_argument("--batch-sizes", default="1,64,256", help="comma-separated batch sizes to time")
    sub.add_argument("--repeats", type=int, default=30, help="timed calls per measurement (median reported)")
    add_common_options(sub, runs=False)

    sub = command("layers", cmd_layers, "layer tickets: remove whole residual blocks at initialization",
                  "Score every removable residual block (identity shortcut) of a ResNet at θ₀, remove the p lowest, "
                  "rebuild a shallower network holding θ₀ and train it with the dense recipe; compare parameters, FLOPs, "
                  "measured training time and an energy estimate with the dense network (trained once, reused).")
    for section in ("data", "model", "train", "layers"):
        add_config_options(sub, section, {"model": ModelConfig(model="resnet20")}.get(section))
    sub.add_argument("--after-training", dest="at", action="store_const", const="after-training",
                     help="same as --at after-training")
    add_power_option(sub)
    add_common_options(sub, replicates=True)

    sub = command("filters", cmd_filters, "filter tickets matched to a layer ticket's number of filters",
                  "Remove the lowest-scored internal filters of every residual block until the network has as many "
                  "convolution filters as the given layer ticket, rebuild it physically narrower from θ₀ and train it "
                  "with the layer ticket's recipe.")
    sub.add_argument("--match-ticket", required=True, help="layer ticket whose filter count to match")
    sub.add_argument("--criterion", default="snip", choices=("snip", "grasp", "magnitude", "random"))
    sub.add_argument("--data-root", default=None, help="folder holding datasets")
    add_power_option(sub)
    add_common_options(sub, replicates=True)

    sub = command("robustness", cmd_robustness, "accuracy on corrupted and shifted test sets, ticket vs dense",
                  "Gaussian noise, blur and contrast at severities 1-5 and a translated test set, as batched tensor "
                  "ops; the tickets next to their dense network (recorded in layer and filter tickets, or --dense), "
                  "which is evaluated once for all of them.")
    sub.add_argument("tickets", nargs="+", metavar="TICKET", help="ticket files, made on the same data")
    sub.add_argument("--dense", default=None,
                     help="ticket file of the dense network (default: the one the tickets record)")
    sub.add_argument("--data-root", default=None, help="folder holding datasets")
    sub.add_argument("--seed", type=int, default=0, help="seed of the noise and shift draws")
    sub.add_argument("--json", action="store_true", help="print exactly one JSON object with the results on stdout")

    sub = command("supertickets", cmd_supertickets, "SuperTickets: search an architecture and its ticket in one training",
                  "Two-in-one training of a supernet: task loss plus a FLOPs-weighted L1 on the depthwise BN scales "
                  "(ρ warmed up linearly), channels with |γ| <= threshold removed physically every --shrink-interval, "
                  "global magnitude pruning with reactivation every --prune-interval down to --density. Ablations and "
                  "search-then-prune baselines (--baseline) by option; --retrain fine-tunes with the mask fixed.")
    for section in ("data", "model", "train", "supertickets"):
        add_config_options(sub, section, SUPERTICKETS_DEFAULTS.get(section))
    add_common_options(sub, replicates=True)

    sub = command("transfer", cmd_transfer, "reuse a ticket on another dataset: new head, mask fixed",
                  "Keep the ticket's architecture, weights and mask, replace the classifier head for the new "
                  "dataset's classes, and fine-tune with the mask fixed.")
    sub.add_argument("ticket", help="ticket file (e.g. from `ticketlab supertickets`)")
    for section in ("data", "train"):
        add_config_options(sub, section, SUPERTICKETS_DEFAULTS.get(section))
    add_common_options(sub, replicates=True)

    sub = command("frontier", cmd_frontier, "accuracy vs effective cost of SuperTickets runs: table and plot",
                  "Read `ticketlab supertickets` run directories and write frontier.md, frontier.png and "
                  "frontier.json: test accuracy (found and retrained) against FLOPs per example at the mask.")
    sub.add_argument("runs", nargs="+", help="run directories (runs/supertickets-<hash>)")
    sub.add_argument("--out", required=True, help="folder for the table and plot")
    sub.add_argument("--json", action="store_true", help="print exactly one JSON object with the results on stdout")

    sub = command("sweep", cmd_sweep, "run a grid of runs (methods × densities × seeds × ...) locally or on Ray",
                  "Run every point of a TOML/YAML grid file as an independent run of one command, on a local "
                  "process pool or on Ray; finished runs are skipped when run again; writes summary.json and "
                  "report.md in runs/sweep-<hash>/. Exit code 1 when a run failed.")
    sub.add_argument("grid", help="grid file (.toml, or .yaml/.yml with PyYAML)")
    sub.add_argument("--engine", default="local", choices=("local", "ray"))
    sub.add_argument("--address", default=None, help="ray only: address of an existing cluster (default: start a local one)")
    sub.add_argument("--workers", type=int, default=None, help="parallel runs (default: the number of cores)")
    sub.add_argument("--runs-dir", default="runs", help="where run directories are created")
    sub.add_argument("--json", action="store_true", help="print exactly one JSON object with the results on stdout")

    add_ownership_commands(command)  # keygen, sign, verify, attack

    sub = command("methods", cmd_methods, "list the pruning-at-initialization methods", "List the PaI methods.")
    add_common_options(sub, runs=False)

    sub = command("show", cmd_show, "summarize a ticket file", "Print a ticket's model, method, densities and metrics.")
    sub.add_argument("ticket", help="path of a ticket.safetensors file")
    add_common_options(sub, runs=False)

    sub = command("completion", cmd_completion, "print a shell completion script (bash, zsh or tcsh)",
                  "Print a completion script generated from the command definitions, e.g. "
                  "`ticketlab completion bash > ~/.local/share/bash-completion/completions/ticketlab`.")
    sub.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")

    sub = command("models", cmd_models, "list the known models", "List the model names ticketlab can build.")
    add_common_options(sub, runs=False)
    sub = command("datasets", cmd_datasets, "list the known datasets", "List the datasets ticketlab can load.")
    add_common_options(sub, runs=False)
    return parser


# Options naming files or folders a command writes, checked before any work starts.
OUTPUT_FILES = {"export": ("out",), "keygen": ("out",), "sign": ("out", "claim"), "attack": ("out",)}
OUTPUT_DIRS = {"report": ("out",), "frontier": ("out",)}
OS_HINTS = {errno.ENOSPC: "the disk is full; free some space or write elsewhere",
            errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
            errno.EACCES: "permission denied; check the permissions or write elsewhere",
            errno.EPERM: "operation not permitted; check the permissions or write elsewhere",
            errno.EROFS: "the file system is read-only; write elsewhere",
            errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
            errno.EISDIR: "it is a folder; give a file",
            errno.ENOENT: "no such file or folder; check the path",
            errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
            errno.EEXIST: "it already exists; choose another path"}


OUT_OF_MEMORY = "out of memory; use smaller sizes (model, batch size, data subset) or a machine with more memory"


def describe_os_error(exc: OSError, args=None) -> str:
    """'<path>: <reason>; <what to do>' in one line. A failed write on an open file names no path: then
    the place the command writes to (its runs directory or output) is named."""
    where = next((getattr(args, name) for name in ("runs_dir", "out") if getattr(args, name, None)), None)
    path = exc.filename if exc.filename is not None else (f"a file under {where}" if where else "a file")
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = OS_HINTS.get(exc.errno)
    return one_line(f"cannot use {path}: {reason}" + (f" ({hint})" if hint else ""))


def one_line(message: str) -> str:
    return " ".join(message.split())


def check_common(args) -> None:
    """What every command's options must satisfy whatever the command does: seeds, workers and the
    files and folders it will write (before any work starts)."""
    if getattr(args, "seed", None) is not None:
        checks.seed("--seed", args.seed)
    if getattr(args, "workers", None) is not None:
        checks.integer("--workers", args.workers, 1, MAX_WORKERS)
    if getattr(args, "runs_dir", None) is not None:
        checks.writable_dir(args.runs_dir, "runs directory")
    for name in OUTPUT_DIRS.get(args.command, ()):
        checks.writable_dir(getattr(args, name), "--" + name + " folder")
    for name in OUTPUT_FILES.get(args.command, ()):
        if getattr(args, name, None) is not None:
            checks.writable_file(getattr(args, name), "--" + name + " file")


def main(argv: list[str] | None = None) -> int:
    import contextlib
    import os
    from ticketlab import distributed
    from ticketlab import runs
    runs.on_work_start.clear()  # nothing left over from an earlier command in this process
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare `ticketlab`: what it can do
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    try:
        apply_preset(args, argv)
    except TicketlabError as exc:
        print(f"ticketlab: error: {exc}", file=sys.stderr)
        return 2
    try:
        # Under torchrun every rank runs the command (data-parallel training); only rank 0 prints results.
        distributed.init_from_env()
        check_common(args)
        if hasattr(args, "steps"):  # a training batch (not `infer`'s): refuse it before any run directory exists
            distributed.check_batch_size(getattr(args, "batch_size", None))
        with contextlib.ExitStack() as stack:
            if not distributed.is_main():
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            code = args.handler(args)
            sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
            return code
    except TicketlabError as exc:
        print(f"ticketlab: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as other tools do
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # the file system refused (full disk, permissions, a file where a folder goes)
        print(f"ticketlab: error: {describe_os_error(exc, args)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"ticketlab: error: {OUT_OF_MEMORY}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # torch's allocators (CPU and CUDA) raise RuntimeErrors when memory runs out
        if not any(text in str(exc) for text in ("can't allocate memory", "out of memory", "Cannot allocate memory")):
            raise
        print(f"ticketlab: error: {OUT_OF_MEMORY} ({one_line(str(exc))[:200]})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
