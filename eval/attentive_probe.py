"""Attentive probe on frozen patch tokens: one learned query, one cross-attention block, a linear head.

The pooling block is timm's AttentionPoolLatent (latent query -> multi-head cross-attention over the tokens -> MLP
with a residual), the same design as the attentive probes of V-JEPA. Settings are chosen on a held-out part of the
training set; the chosen model scores the test set once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import AttentionPoolLatent
from torch import nn

from eval.linear_probe import holdout_split, standardise


@dataclass
class AttentiveProbeConfig:
    """Settings of the attentive probe (each lr is trained on the fit part and chosen on the held-out part)."""

    lrs: tuple[float, ...] = (1e-3,)
    weight_decay: float = 0.01
    epochs: int = 10
    batch_size: int = 256
    num_heads: int = 4
    pos_embed: bool = False   # a learned embedding per token position (for tokens that carry no position)
    val_fraction: float = 0.1
    # tokens minus the training tokens' mean, over their std, per channel (as the linear probe's features): tokens
    # that differ from clip to clip by a few % of their size otherwise give the probe almost nothing to attend to
    standardise: bool = False


class AttentiveProbe(nn.Module):
    def __init__(self, dim: int, num_tokens: int, num_classes: int, num_heads: int = 4, pos_embed: bool = False):
        super().__init__()
        heads = num_heads if dim % num_heads == 0 else 1
        self.pool = AttentionPoolLatent(dim, num_heads=heads, feat_size=num_tokens if pos_embed else None,
                                        pos_embed="abs" if pos_embed else "", norm_layer=partial(nn.LayerNorm, eps=1e-6))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(tokens))


@dataclass
class AttentiveResult:
    test_acc: float
    lr: float
    val_acc: dict[str, float] = field(default_factory=dict)
    test_pred: torch.Tensor | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("test_pred")
        return out


@torch.no_grad()
def _predict(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(t).argmax(1) for t in tokens.split(1024)])


def _train(x, y, num_classes: int, lr: float, cfg: AttentiveProbeConfig, seed: int) -> AttentiveProbe:
    torch.manual_seed(seed)
    model = AttentiveProbe(x.shape[2], x.shape[1], num_classes, cfg.num_heads, cfg.pos_embed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(x) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(x), generator=g).split(cfg.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


def attentive_probe(train_tokens: torch.Tensor, train_y: torch.Tensor, test_tokens: torch.Tensor,
                    test_y: torch.Tensor, config: AttentiveProbeConfig | None = None, seed: int = 0,
                    **overrides) -> AttentiveResult:
    """train_tokens [N, T, D] -> a probe per lr trained on the fit part, the best on held-out accuracy scores test."""
    cfg = config or AttentiveProbeConfig()
    if overrides:
        cfg = AttentiveProbeConfig(**{**asdict(cfg), **overrides})
    num_classes = int(train_y.max()) + 1
    if cfg.standardise:
        (n, t, d), m = train_tokens.shape, len(test_tokens)
        train_tokens, test_tokens = standardise(train_tokens.reshape(-1, d), test_tokens.reshape(-1, d))
        train_tokens, test_tokens = train_tokens.view(n, t, d), test_tokens.view(m, t, d)
    fit_idx, val_idx = holdout_split(len(train_tokens), cfg.val_fraction, seed)
    fit_x, fit_y, val_x, val_y = train_tokens[fit_idx], train_y[fit_idx], train_tokens[val_idx], train_y[val_idx]
    with torch.random.fork_rng(devices=[]):
        best, val_acc = None, {}
        for lr in cfg.lrs:
            with torch.enable_grad():
                model = _train(fit_x, fit_y, num_classes, lr, cfg, seed)
            val_acc[f"lr={lr:g}"] = float((_predict(model, val_x) == val_y).float().mean())
            if best is None or val_acc[f"lr={lr:g}"] > val_acc[f"lr={best[0]:g}"]:
                best = (lr, model)
    pred = _predict(best[1], test_tokens)
    return AttentiveResult(test_acc=float((pred == test_y).float().mean()), lr=best[0], val_acc=val_acc, test_pred=pred)
