"""Controls that tell whether a ticket is special: here, random reinitialization of the same mask."""

from __future__ import annotations

from pathlib import Path

from ticketlab.config import derive_seed
from ticketlab.imp import ImpSetup, rewind_iteration
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.trainer import train


def train_reinit_control(setup: ImpSetup, level_dir: Path, mask: Mask, level: int) -> dict:
    """Same mask, fresh weights from the init distribution (its own seed), same recipe from iteration k."""
    seed = derive_seed(setup.seed, f"reinit:{level}")
    model = create_model(setup.model_cfg.model, setup.data.input_shape, setup.data.num_classes, seed=seed)
    return train(model, setup.data, setup.train_cfg, out_dir=level_dir / "random-reinit",
                 data_seed=derive_seed(setup.seed, "data"), mask=mask, start_iteration=rewind_iteration(setup),
                 quiet=setup.quiet, label=f"level {level} reinit")
