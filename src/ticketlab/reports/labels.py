"""Names for the runs a report compares: given by the user (`--label`), or made from the config values
that differ between the runs (`steps 60it` vs `steps 80it`), so two runs that differ in training
length are told apart by what differs, not by their hashes."""

from __future__ import annotations

import json

from ticketlab.errors import TicketlabError

# Config fields that never tell runs apart (where data lives, which device computed).
IGNORED = {"data_root", "device"}
MAX_LABEL = 60  # characters: longer labels crowd legends; the report's run table has the whole config


def parse_labels(spec: str | None, count: int | None = None) -> list[str] | None:
    """'dense,ltr' -> ['dense', 'ltr']; checked against the number of runs when it is known."""
    if spec is None:
        return None
    return check_labels([label.strip() for label in spec.split(",")], count, f"--label {spec!r}")


def check_labels(labels: list[str], count: int | None = None, what: str = "labels") -> list[str]:
    """One non-empty, distinct name per run."""
    if any(not isinstance(label, str) or not label.strip() for label in labels):
        raise TicketlabError(f"bad {what}: give one non-empty name per run, separated by commas")
    if len(set(labels)) != len(labels):
        raise TicketlabError(f"bad {what}: the names must differ, or the plots cannot tell the runs apart")
    if count is not None and len(labels) != count:
        raise TicketlabError(f"{what} names {len(labels)} run(s) but {count} run(s) are reported; give one name per run")
    return labels


def flat_config(config: dict) -> dict[str, str]:
    """`section.field` -> value (as JSON text) of a run's config.json, its kind included."""
    values = {"kind": json.dumps(config.get("kind"))}
    for section, fields in (config.get("config") or {}).items():
        if isinstance(fields, dict):
            values.update({f"{section}.{name}": json.dumps(value, sort_keys=True) for name, value in fields.items()
                           if name not in IGNORED})
    return values


def differing(configs: list[dict]) -> list[str]:
    """The config keys every run has whose values are not the same in all of them."""
    flats = [flat_config(c) for c in configs]
    shared = set.intersection(*(set(flat) for flat in flats)) if flats else set()
    return [k for k in sorted(shared) if len({flat[k] for flat in flats}) > 1]


# Keys tried first when naming runs: what most often tells runs apart in this field ("method": what
# found the tickets, e.g. imp, ltr k=500it, snip).
PRIORITY = ("method", "pai.method", "prune.rewind_step", "prune.retrain", "train.steps", "pai.density",
            "model.model", "data.dataset")


def telling_keys(flats: list[dict], skip=lambda key: False) -> list[str]:
    """The fewest keys (tried in PRIORITY order, then alphabetically) that tell the runs apart: each
    key is kept only if it separates runs the earlier keys did not (a key a run lacks counts as a value)."""
    candidates = sorted({k for flat in flats for k in flat if not skip(k)},
                        key=lambda k: (PRIORITY.index(k) if k in PRIORITY else len(PRIORITY), k))
    chosen: list[str] = []
    groups = 1
    for key in candidates:
        if groups == len(flats):
            break
        trial = len({tuple(flat.get(k) for k in chosen + [key]) for flat in flats})
        if trial > groups:
            chosen.append(key)
            groups = trial
    return chosen


def _value(text: str) -> str:
    value = json.loads(text)
    return value if isinstance(value, str) else json.dumps(value)


def _label(flat: dict, keys: list[str]) -> str:
    parts = [_value(flat[key]) if key == "method" else f"{key.split('.')[-1]} {_value(flat[key])}"
             for key in keys if key in flat]
    label = ", ".join(parts)
    return label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 1] + "…"


def _flats(configs: list[dict], methods: list[str]) -> list[dict]:
    return [{**flat_config(c), "method": json.dumps(m)} for c, m in zip(configs, methods)]


def automatic(configs: list[dict], methods: list[str], names: list[str]) -> list[str]:
    """One label per run: the config values that tell the runs apart (field names without their
    section; the method by its name), else the method, else the run folder's name; made unique by the
    folder's name when two still coincide."""
    flats = _flats(configs, methods)
    keys = telling_keys(flats)
    labels = [(_label(flat, keys) if keys else "") or method or name for flat, method, name in zip(flats, methods, names)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({name})" for label, name in zip(labels, names)]
    return labels


def assign(runs, given: list[str] | None = None) -> None:
    """Set each run's `label`: the given names, or automatic ones."""
    if given is not None and len(given) != len(runs):
        raise TicketlabError(f"--label names {len(given)} run(s) but {len(runs)} run(s) are reported; "
                             "give one name per run")
    labels = given or automatic([r.config for r in runs], [r.method for r in runs], [r.run_dir.name for r in runs])
    for run, label in zip(runs, labels):
        run.label = label


def curve_names(runs) -> None:
    """Set each run's `curve`: its label without the density, so that runs of one ticket each (a
    sweep's cells) join into one curve per method across densities."""
    flats = _flats([r.config for r in runs], [r.method for r in runs])
    keys = telling_keys(flats, skip=lambda key: "densit" in key)
    for run, flat in zip(runs, flats):
        run.curve = (_label(flat, keys) if keys else "") or run.method or run.kind
