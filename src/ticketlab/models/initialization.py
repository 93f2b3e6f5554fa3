"""Weight initialization shared by every model family.

Linear and Conv weights: Kaiming normal (fan_in, ReLU gain), i.e. N(0, 2 / fan_in), as open_lth
initializes them (the default), or Glorot normal, N(0, 2 / (fan_in + fan_out)), as the LTH paper
(Frankle & Carbin 2019) did. Biases: zero (the default), or "uniform": PyTorch's default
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn when the layer is built and kept as open_lth keeps them.
BatchNorm weight 1, bias 0. Every draw comes from the global torch RNG in module order, so the
weights depend only on the seed `create_model` sets — which is what the random-reinitialization
control relies on (same model, another seed). The bias choice draws nothing here, so the weights of
one seed are the same with either.
"""

from torch import nn

from ticketlab.errors import TicketlabError

_WEIGHTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d)
WEIGHT_INITS = {
    "kaiming": lambda weight: nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu"),
    "glorot": nn.init.xavier_normal_,
}
BIAS_INITS = ("zero", "uniform")


def initialize_weights_(model: nn.Module, weights: str = "kaiming", bias: str = "zero") -> None:
    """Re-initialize every layer of `model` in place (overwrites PyTorch's default init, biases too unless
    `bias` is "uniform")."""
    if weights not in WEIGHT_INITS or bias not in BIAS_INITS:
        raise TicketlabError(f"unknown initialization {weights!r} with biases {bias!r}; known: "
                             f"{', '.join(WEIGHT_INITS)} with biases {', '.join(BIAS_INITS)}")
    for module in model.modules():
        if isinstance(module, _WEIGHTED_LAYERS):
            WEIGHT_INITS[weights](module.weight)
            if module.bias is not None and bias == "zero":
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORM_LAYERS):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
