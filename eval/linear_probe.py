"""Linear probe on frozen features: multinomial logistic regression, weight decay chosen on held-out train data.

Protocol: features are standardised with training statistics; for each weight decay a probe is trained (AdamW,
cosine LR, 10 epochs) on 90 % of the training set and scored on the other 10 %; the best weight decay is retrained
for 30 epochs on the whole training set and the test set is scored once. (15 epochs at LR 2e-3 under-fitted: 64.0 % vs 70.4 % at 40
epochs / 1e-2 on the same frozen features.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class ProbeResult:
    test_acc: float
    weight_decay: float
    val_acc: dict[str, float] = field(default_factory=dict)
    features: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _train(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, epochs: int, lr: float,
           batch_size: int, seed: int) -> torch.nn.Linear:
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = F.cross_entropy(head(x[idx]), y[idx]) + 0.5 * weight_decay * head.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head


@torch.no_grad()
def _accuracy(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    correct = sum(int((head(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(8192), y.split(8192)))
    return correct / len(y)


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 weight_decays=(1e-4, 1e-3), epochs: int = 30, sweep_epochs: int = 10, lr: float = 1e-2,
                 batch_size: int = 1024, val_fraction: float = 0.1, seed: int = 0) -> ProbeResult:
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    with torch.no_grad():
        train_x, test_x = standardise(train_x.float(), test_x.float())
    perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    n_val = int(len(train_x) * val_fraction)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    val_acc = {}
    with torch.enable_grad():
        for wd in weight_decays:
            head = _train(train_x[fit_idx], train_y[fit_idx], num_classes, wd, sweep_epochs, lr, batch_size, seed)
            val_acc[f"{wd:g}"] = _accuracy(head, train_x[val_idx], train_y[val_idx])
        best = max(weight_decays, key=lambda wd: val_acc[f"{wd:g}"])
        head = _train(train_x, train_y, num_classes, best, epochs, lr, batch_size, seed)
    return ProbeResult(test_acc=_accuracy(head, test_x, test_y), weight_decay=best, val_acc=val_acc,
                       features=train_x.shape[1])
