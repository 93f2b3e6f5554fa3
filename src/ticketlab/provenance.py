"""A ticket's provenance: how it was made, as one dataclass.

`Provenance` is the typed form of a ticket file's optional metadata fields (docs/format.md): the data
and the recipe as `DataConfig` and `TrainConfig`, the method, the seeds, the rewind step (iterations),
the IMP level, what finding it cost and its training summary, and the records some families add
(`retrain`, `collapsed_layers`, `pai`, `costs`, `dense_ticket`, `original_architecture`). A field left
None was not recorded and is not written. Fields this ticketlab has no attribute for (a family's own
records such as `removed_blocks`, or a newer version's) live in `extra`, written and read back as they
are, so a ticket read and saved again loses nothing.

`to_metadata()` gives the JSON fields exactly as ticketlab has always written them (each config as its
fields, the other values as they are), so identical runs still give byte-identical ticket files and
older tickets load. A re-saved ticket whose configs predate an option records that option's default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.config import DataConfig, TrainConfig
from ticketlab.errors import TicketlabError

def _recorded(json_type, help: str):
    """A provenance field: None (not recorded) by default; `json_type` is its type in the file."""
    return field(default=None, metadata={"json": json_type, "help": help})


@dataclass
class Provenance:
    # The order is the order in which a ticket file's fields are checked on load.
    dataset: str | None = _recorded(str, "the dataset's name")
    data_config: DataConfig | None = _recorded(dict, "the data it was trained on")
    train_config: TrainConfig | None = _recorded(dict, "the recipe that trained it")
    method: str | None = _recorded(str, "how it was found: dense, imp, ltr, snip, cts-kl, control:<kind>, ...")
    level: int | None = _recorded(int, "the IMP level")
    seed: int | None = _recorded(int, "the run's seed")
    init_seed: int | None = _recorded(int, "the seed of θ₀")
    data_seed: int | None = _recorded(int, "the seed of the data order")
    rewind_step: int | None = _recorded(int, "the iteration k that training starts from")
    retrain: str | None = _recorded(str, "how IMP retrained the survivors: rewind, lr-rewind, finetune")
    metrics: dict | None = _recorded(dict, "the training summary")
    search_cost: dict | None = _recorded(dict, "the compute spent finding the mask")
    collapsed_layers: list | None = _recorded(list, "prunable layers the mask left empty")
    pai: dict | None = _recorded(dict, "what the mask-finding method reported")
    costs: dict | None = _recorded(dict, "a layer or filter ticket's costs next to its dense network")
    dense_ticket: str | None = _recorded(str, "the dense network a layer or filter ticket was cut from")
    original_architecture: dict | None = _recorded(dict, "the architecture a layer or filter ticket was cut from")
    extra: dict = field(default_factory=dict)  # recorded fields without an attribute, kept as they are

    def __post_init__(self):
        for name, cls in (("data_config", DataConfig), ("train_config", TrainConfig)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise TicketlabError(f"Provenance.{name} must be a {cls.__name__} (or None); got a "
                                     f"{type(value).__name__}")
        if not isinstance(self.extra, dict):
            raise TicketlabError(f"Provenance.extra must be a dict; got a {type(self.extra).__name__}")
        clash = sorted(set(self.extra) & set(RECORDED))
        if clash:
            raise TicketlabError(f"Provenance.extra holds {clash[0]!r}, which is a field of its own; set that instead")

    def to_metadata(self) -> dict:
        """The recorded fields as a ticket file holds them: configs as their fields, unset ones left out."""
        out = {}
        for name in RECORDED:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = vars(value).copy() if name in CONFIGS else value
        out.update(self.extra)
        return out

    @classmethod
    def from_metadata(cls, fields: dict, path: str | Path | None = None) -> Provenance:
        """The provenance of a ticket file's metadata fields (the derived ones, such as the density, left
        out by the caller); the configs are rebuilt, anything else unknown goes to `extra`."""
        known = {}
        for name in RECORDED:
            if name not in fields:
                continue
            known[name] = recorded_config(fields, name, CONFIGS[name], path) if name in CONFIGS else fields[name]
        return cls(**known, extra={k: v for k, v in fields.items() if k not in RECORDED})

    def replace(self, **changes) -> Provenance:
        """A copy with `changes` applied (`extra` copied, not shared)."""
        return dataclasses.replace(self, **{"extra": dict(self.extra), **changes})


# The recorded fields and their JSON types, in checking order; the configs among them and their classes.
RECORDED: dict[str, type | tuple] = {f.name: f.metadata["json"] for f in dataclasses.fields(Provenance)
                                     if "json" in f.metadata}
CONFIGS = {"data_config": DataConfig, "train_config": TrainConfig}


def recorded_config(meta: dict, key: str, cls, path):
    """The TrainConfig or DataConfig a ticket's metadata records, or one line saying why it cannot be used."""
    try:
        return cls(**meta[key])
    except TypeError as exc:
        raise TicketlabError(f"ticket file {path}: its {key} does not match this ticketlab's options ({exc})") from None
    except TicketlabError as exc:
        raise TicketlabError(f"ticket file {path}: its {key} is invalid ({exc})") from None
