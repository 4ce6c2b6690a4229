"""Linear probe on frozen features: multinomial logistic regression, learning rate and weight decay chosen on a
held-out part of the training set.

Protocol: features are standardised with training statistics; every setting of the sweep is fitted on 90 % of the
training set and scored on the other 10 %; the best is refitted on the whole training set and the test set is
scored once. Test labels take no part in any choice.

Solvers: `lbfgs` minimises the regularised cross-entropy to convergence, full batch, one fit per weight decay (no
learning rate), walking the weight decays from the largest down, each fit starting from the previous solution, in a
preconditioned basis (`rotate`, `_fit_preconditioned`). `adamw` trains minibatch heads (one per lr x weight decay
pair, in one pass) for a fixed number of epochs; it under-fits pooled features (the 850-step quickstart encoder,
avg: 71.6 % where lbfgs reaches 81.7 %) but does as well on wide flat features at a fraction of the time (L-BFGS
reads every row at every iteration; on 6,272 flat features of the 20-epoch encoder the preconditioned lbfgs took
379 s and 6.6 GB for 89.5 %, adamw ~1 min for 90.0 %). `auto`, the default, takes lbfgs up to
`lbfgs_max_features` features and adamw above.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

SOLVERS = ("auto", "lbfgs", "adamw")
# Each solver's weight-decay grid when none is given: the converged solver needs (and can use) the small decays
# that minibatch training, which stops early anyway, gains nothing from.
# On the 20-epoch Fashion-MNIST encoder (last 4 layers, avg) the hold-out accuracy of lbfgs peaked at 1e-7: 87.60 /
# 88.05 / 88.30 / 88.02 % for 0 / 1e-8 / 1e-7 / 1e-6, hence a grid reaching below it.
DEFAULT_WEIGHT_DECAYS = {"lbfgs": (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3), "adamw": (1e-4, 1e-3)}


@dataclass
class LinearProbeConfig:
    """Settings of the linear probe. solver: auto (lbfgs up to lbfgs_max_features features, adamw above), lbfgs or
    adamw. weight_decays: None = the solver's grid (DEFAULT_WEIGHT_DECAYS). lbfgs sweeps the weight decays (max_iter
    iterations per fit); adamw every lr x weight decay pair and uses lrs, epochs, sweep_epochs and batch_size."""

    solver: str = "auto"
    lbfgs_max_features: int = 2048
    lrs: tuple[float, ...] = (1e-2,)
    weight_decays: tuple[float, ...] | None = None
    max_iter: int = 100
    epochs: int = 30
    sweep_epochs: int = 10
    batch_size: int = 1024
    val_fraction: float = 0.1

    def resolve(self, features: int) -> LinearProbeConfig:
        """The concrete settings for features this wide: the solver auto picks, its weight-decay grid."""
        if self.solver not in SOLVERS:
            raise ValueError(f"linear probe solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        solver = self.solver
        if solver == "auto":
            solver = "lbfgs" if features <= self.lbfgs_max_features else "adamw"
        decays = tuple(self.weight_decays) if self.weight_decays else DEFAULT_WEIGHT_DECAYS[solver]
        return LinearProbeConfig(**{**asdict(self), "solver": solver, "weight_decays": decays})


@dataclass
class ProbeResult:
    test_acc: float
    solver: str
    lr: float | None  # None: the lbfgs solver has none
    weight_decay: float
    val_acc: dict[str, float] = field(default_factory=dict)
    features: int = 0
    test_pred: torch.Tensor | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("test_pred")
        return out


@dataclass
class _Shuffled:
    """Training rows in a seeded random order, gathered once, and the generator state after drawing that order:
    every setting of a sweep trains on the same shuffled copy instead of gathering its own."""

    x: torch.Tensor
    y: torch.Tensor
    rng_state: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, seed: int) -> _Shuffled:
        order, rng_state = _seeded_order(len(x), seed)
        return cls(x[order], y[order], rng_state)

    def rows(self, start: int, stop: int | None = None) -> _Shuffled:
        """A contiguous part, as views: a random subset of the rows, still in random order."""
        return _Shuffled(self.x[start:stop], self.y[start:stop], self.rng_state)


def _train(data: _Shuffled, num_classes: int, settings: list[tuple[float, float]], epochs: int,
           batch_size: int) -> list[torch.nn.Linear]:
    """One head per (lr, weight decay) setting, all trained in the same pass over the data: AdamW on
    cross-entropy + L2, cosine LR, over contiguous blocks of the shuffled rows visited in a new random order each
    epoch. The heads are independent (the summed loss gives each its own gradient, one param group per lr), so
    every head is exactly what training it alone would give; sharing the pass matters because the matmuls of a
    wide probe (e.g. 6,272 flattened features) are memory-bound: reading the rows costs more than the few extra
    output columns, and gathering random rows for every batch cost as much again as the matmuls themselves."""
    g = torch.Generator()
    g.set_state(data.rng_state)
    x, y = data.x, data.y
    heads = [torch.nn.Linear(x.shape[1], num_classes) for _ in settings]
    for head in heads:
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    groups = [{"params": list(head.parameters()), "lr": lr} for head, (lr, _) in zip(heads, settings)]
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    starts = torch.arange(0, len(x), batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * len(starts), 1))
    decays = torch.tensor([wd for _, wd in settings])
    for _ in range(epochs):
        for start in starts[torch.randperm(len(starts), generator=g)].tolist():
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            weight = torch.cat([h.weight for h in heads])  # [S * classes, F]: one matmul for all heads
            bias = torch.cat([h.bias for h in heads])
            logits = F.linear(xb, weight, bias).view(len(xb), len(heads), num_classes)
            ce = F.cross_entropy(logits.transpose(1, 2), yb[:, None].expand(-1, len(heads)), reduction="none")
            l2 = torch.stack([h.weight.pow(2).sum() for h in heads])
            loss = (ce.mean(0) + 0.5 * decays * l2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return heads


def _fit_lbfgs(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int,
               start: torch.nn.Linear | None = None, penalty: torch.Tensor | None = None) -> torch.nn.Linear:
    """Multinomial logistic regression, mean cross-entropy + weight_decay / 2 * sum_j penalty_j |W_j|^2 (penalty 1:
    the plain |W|^2), minimised full batch by L-BFGS (strong Wolfe line search) from zero or from `start`.
    Deterministic: no data order, no learning rate."""
    head = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(start.weight if start is not None else torch.zeros_like(head.weight))
        head.bias.copy_(start.bias if start is not None else torch.zeros_like(head.bias))
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-10)
    scale = torch.ones(x.shape[1]) if penalty is None else penalty

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(x), y) + 0.5 * weight_decay * (head.weight.pow(2) * scale).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def rotate(train: torch.Tensor, *others: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every tensor in the eigenbasis of the training features' covariance (they are standardised, so centred), and
    the eigenvalues: an orthogonal change of basis, so a linear head and its |W|^2 mean the same in it. The
    covariance is summed in float32 (float64 took minutes for 2,560 features): its precision only sets how well the
    solver is preconditioned, not what it converges to, since any orthogonal basis keeps the objective."""
    cov = sum(c.T @ c for c in train.split(8192)) / len(train)
    eigvals, eigvecs = torch.linalg.eigh(cov.double())
    basis = eigvecs.float()
    return [t @ basis for t in (train, *others)], eigvals.clamp_min(0).float()


def _fit_preconditioned(u: torch.Tensor, y: torch.Tensor, eigvals: torch.Tensor, num_classes: int,
                        weight_decay: float, max_iter: int, start: torch.nn.Linear | None = None) -> torch.nn.Linear:
    """`_fit_lbfgs`'s objective on rotated features u (see `rotate`), solved in coordinates where it is well
    conditioned. Encoder features are strongly correlated (low RankMe): their covariance spans eigenvalues from ~1e2
    down to ~1e-5, and on the 850-step encoder's average-pooled features plain L-BFGS had not converged after 500
    iterations (test accuracy still rising, 74.9 -> 77.9 % from 200 to 500). Scaling direction j by
    s_j = 1 / sqrt(eigval_j + weight_decay) gives the data term and the penalty about unit curvature in every
    direction; the head W_z on the scaled features with penalty weight_decay / 2 * sum_j s_j^2 |W_z[:, j]|^2 is
    exactly the head W = W_z * s on u with weight_decay / 2 * |W|^2 (z W_z^T = u W^T), so the optimum is the same
    and converges in ~100 iterations. Returns the head on u (so warm starts and predictions stay in one basis)."""
    scale = (eigvals + weight_decay).rsqrt()
    start_z = None
    if start is not None:
        start_z = torch.nn.Linear(u.shape[1], num_classes)
        with torch.no_grad():
            start_z.weight.copy_(start.weight / scale)
            start_z.bias.copy_(start.bias)
    head = _fit_lbfgs(u * scale, y, num_classes, weight_decay, max_iter, start_z, penalty=scale.square())
    with torch.no_grad():
        head.weight.mul_(scale)
    return head


@torch.no_grad()
def _predict(head: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([head(xb).argmax(1) for xb in x.split(8192)])


def standardise(train: torch.Tensor, *others: torch.Tensor, chunk: int = 4096,
                order: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Every tensor minus the training mean, over the training std (unbiased), per feature; the training rows in
    `order` if given. One new copy per tensor, filled chunk by chunk: a flattened probe of the last 4 layers is
    60k x 25,088 floats (6 GB), and every extra full-size temporary beside the caller's features risks the OOM
    killer. The statistics are summed in float64 over row chunks (torch's std(0) over 60k x 6,272 features took
    7-12 s here, the chunked sums 3 s, with the same result to 1e-7)."""
    mean = sum(c.sum(0, dtype=torch.float64) for c in train.split(chunk)) / len(train)
    mean32 = mean.float()
    var = sum((c.float() - mean32).pow(2).sum(0, dtype=torch.float64) for c in train.split(chunk))
    std = (var / max(len(train) - 1, 1)).sqrt().float().clamp_min(1e-6)
    out = []
    for t, rows in [(train, order), *((o, None) for o in others)]:
        z = torch.empty(t.shape, dtype=torch.float32)
        for start in range(0, len(t), chunk):
            part = t[start : start + chunk] if rows is None else t[rows[start : start + chunk]]
            torch.sub(part.float(), mean32, out=z[start : start + chunk]).div_(std)
        out.append(z)
    return out


def _validation_rows(n: int, val_fraction: float) -> int:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    return max(1, int(n * val_fraction))


def _seeded_order(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random order of n rows and the generator state after drawing it (for what is drawn next)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    return order, g.get_state()


def holdout_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, validation indices) of a seeded split of the training set (the linear probe's split too)."""
    n_val = _validation_rows(n, val_fraction)
    order, _ = _seeded_order(n, seed)
    return order[n_val:], order[:n_val]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 config: LinearProbeConfig | None = None, seed: int = 0, **overrides) -> ProbeResult:
    """Sweep on a held-out part of the training set, retrain the chosen setting on all of it, score test once."""
    cfg = config or LinearProbeConfig()
    if overrides:
        cfg = LinearProbeConfig(**{**asdict(cfg), **overrides})
    cfg = cfg.resolve(train_x.shape[1])
    num_classes = int(train_y.max()) + 1
    # One standardised copy of the training rows, in the seeded random order that is both the hold-out split
    # (validation = its first rows) and the final training's order: the sweep trains on a view of the rest.
    order, rng_state = _seeded_order(len(train_x), seed)
    n_val = _validation_rows(len(train_x), cfg.val_fraction)
    with torch.no_grad():
        train_x, test_x = standardise(train_x, test_x, order=order)
    features = train_x.shape[1]
    if cfg.solver == "lbfgs":  # the solver's preconditioned basis: same objective, ~100 iterations (see rotate)
        with torch.no_grad():
            (train_x, test_x), eigvals = rotate(train_x, test_x)
    data = _Shuffled(train_x, train_y[order], rng_state)
    if cfg.solver == "lbfgs":
        lr, wd, head, val_acc = None, *_lbfgs_sweep(data, n_val, num_classes, cfg, eigvals)
    else:
        lr, wd, head, val_acc = _adamw_sweep(data, n_val, num_classes, cfg)
    pred = _predict(head, test_x)
    return ProbeResult(test_acc=float((pred == test_y).float().mean()), solver=cfg.solver, lr=lr, weight_decay=wd,
                       val_acc=val_acc, features=features, test_pred=pred)


def _lbfgs_sweep(data: _Shuffled, n_val: int, num_classes: int, cfg: LinearProbeConfig, eigvals: torch.Tensor):
    """(weight decay, head refitted on all rows, validation accuracies) on rotated rows (see `rotate`): the largest
    weight decay first, each fit warm-started from the previous one (a regularisation path converges in fewer
    iterations)."""
    decays = sorted(cfg.weight_decays, reverse=True)
    val_acc, fits, previous = {}, {}, None
    with torch.enable_grad():
        if len(decays) > 1:
            fit, val = data.rows(n_val), data.rows(0, n_val)
            for wd in decays:
                previous = fits[wd] = _fit_preconditioned(fit.x, fit.y, eigvals, num_classes, wd, cfg.max_iter,
                                                          previous)
                val_acc[f"wd={wd:g}"] = float((_predict(previous, val.x) == val.y).float().mean())
            wd = max(decays, key=lambda d: val_acc[f"wd={d:g}"])
        else:
            wd = decays[0]
        head = _fit_preconditioned(data.x, data.y, eigvals, num_classes, wd, cfg.max_iter, fits.get(wd))
    return wd, head, val_acc


def _adamw_sweep(data: _Shuffled, n_val: int, num_classes: int, cfg: LinearProbeConfig):
    """(lr, weight decay, head retrained on all rows, validation accuracies) of minibatch AdamW heads."""
    settings = [(lr, wd) for lr in cfg.lrs for wd in cfg.weight_decays]
    val_acc = {}
    with torch.enable_grad():
        if len(settings) > 1:
            val = data.rows(0, n_val)
            for (lr, wd), head in zip(settings, _train(data.rows(n_val), num_classes, settings, cfg.sweep_epochs,
                                                       cfg.batch_size)):
                val_acc[f"lr={lr:g},wd={wd:g}"] = float((_predict(head, val.x) == val.y).float().mean())
            lr, wd = max(settings, key=lambda s: val_acc[f"lr={s[0]:g},wd={s[1]:g}"])
        else:
            lr, wd = settings[0]
        head = _train(data, num_classes, [(lr, wd)], cfg.epochs, cfg.batch_size)[0]
    return lr, wd, head, val_acc
