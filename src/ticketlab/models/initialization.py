"""Weight initialization shared by every model family (open_lth's scheme).

Linear and Conv weights: Kaiming normal (fan_in, ReLU gain), i.e. N(0, 2 / fan_in); biases zero;
BatchNorm weight 1, bias 0. Every draw comes from the global torch RNG in module order, so the
weights depend only on the seed `create_model` sets — which is what the random-reinitialization
control relies on (same model, another seed).
"""

from torch import nn

_WEIGHTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d)


def initialize_weights_(model: nn.Module) -> None:
    """Re-initialize every layer of `model` in place (overwrites PyTorch's default init)."""
    for module in model.modules():
        if isinstance(module, _WEIGHTED_LAYERS):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORM_LAYERS):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
