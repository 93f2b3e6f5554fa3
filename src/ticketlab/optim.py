"""SGD and Adam for CPU training, computing exactly what torch.optim's (for-loop) versions compute.

Why not torch.optim: in torch 2.13 an Optimizer's constructor (add_param_group) and every step import
torch._dynamo, which takes 1.3 s or more of a short run, although nothing here is compiled. These two
classes do the same arithmetic in the same order as torch.optim.SGD and torch.optim.Adam on the CPU
(foreach off, no AMSGrad, no maximize), so results are bit for bit the same, and their `state`,
`param_groups`, `state_dict()` and `load_state_dict()` have torch.optim's layout: a checkpoint written
with either resumes with the other. The trainer uses them for parameters on the CPU; on a GPU it uses
torch.optim, whose fused multi-tensor kernels pay off there.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.optim import optimizer as torch_optimizer

# The hyperparameters torch.optim records in each param group (so that state dicts match key for key).
SGD_DEFAULTS = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
                "maximize": False, "foreach": None, "differentiable": False, "fused": None}
ADAM_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                 "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
                 "decoupled_weight_decay": False}


class _Optimizer:
    """Parameter groups and per-parameter state, as torch.optim.Optimizer keeps them."""

    defaults: dict = {}

    def __init__(self, params, **hyper):
        self.param_groups = [{**self.defaults, **hyper, "params": list(params)}]
        self.state: dict[torch.Tensor, dict] = defaultdict(dict)

    def step(self) -> None:
        """One update. The global step hooks of torch.optim (register_optimizer_step_pre_hook and _post_hook)
        run before and after it, as they do around torch.optim's steps."""
        for hook in list(torch_optimizer._global_optimizer_pre_hooks.values()):
            hook(self, (), {})
        with torch.no_grad():
            self._update()
        for hook in list(torch_optimizer._global_optimizer_post_hooks.values()):
            hook(self, (), {})

    def _update(self) -> None:
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def state_dict(self) -> dict:
        """{"state": {index: state}, "param_groups": [hyperparameters and "params": indices]}, as torch.optim."""
        index, groups = {}, []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": [index[id(p)] for p in group["params"]]})
        state = {index[id(p)]: dict(values) for p, values in self.state.items() if id(p) in index and values}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        """Take the saved hyperparameters and state (tensors moved to each parameter's device and, but the step
        count, its dtype), as torch.optim does; the groups must hold as many parameters as the saved ones."""
        groups = saved["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameters or parameter groups")
        by_index = {}
        for group, mine in zip(groups, self.param_groups):
            by_index.update(zip(group["params"], mine["params"]))
            mine.update({k: v for k, v in group.items() if k != "params"})
        self.state = defaultdict(dict)
        for index, values in saved["state"].items():
            p = by_index[int(index)]
            self.state[p] = {key: (value.to(p.device) if key == "step" else value.to(p.device, p.dtype))
                             if torch.is_tensor(value) else value for key, value in values.items()}


class SGD(_Optimizer):
    """torch.optim.SGD's update: weight decay added to the gradient, then momentum (optionally Nesterov)."""

    defaults = SGD_DEFAULTS

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov)

    def _update(self) -> None:
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if decay != 0:
                    grad = grad.add(p, alpha=decay)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.detach().clone()
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
                    grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(grad, alpha=-lr)


class Adam(_Optimizer):
    """torch.optim.Adam's update (L2 weight decay added to the gradient, bias-corrected moments)."""

    defaults = ADAM_DEFAULTS

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _update(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    # torch keeps the step count as a float32 CPU scalar tensor: the same here, for its state dicts
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grad, exp_avg, exp_avg_sq = p.grad, state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                if decay != 0:
                    grad = grad.add(p, alpha=decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = state["step"].item()
                step_size = lr / (1 - beta1 ** step)
                denom = (exp_avg_sq.sqrt() / (1 - beta2 ** step) ** 0.5).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)
