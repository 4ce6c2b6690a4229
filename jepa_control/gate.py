"""The gate before any world model: can a linear map read the agent's (x, y) from the frozen tokens?

Ridge regression from the flattened (pooled) tokens to the true position, fitted on training episodes and scored
(R^2, averaged over x and y) on other episodes. If the encoder cannot see the agent, no planner will save it.
"""
from __future__ import annotations

import torch


def ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression on standardised features, returned in raw coordinates: y ~ x @ weight + bias (float64)."""
    x, y = x.double(), y.double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mu) / sd
    w = torch.linalg.solve(xs.T @ xs + alpha * len(xs) * torch.eye(xs.shape[1], dtype=xs.dtype),
                           xs.T @ (y - y.mean(0))) / sd[:, None]
    return w, y.mean(0) - mu @ w


def r2_per_column(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """R^2 of each column of y [n, k] -> [k] (float64)."""
    y = y.double()
    return 1 - ((pred.double() - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def r2_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """R^2 averaged over the columns of y."""
    return float(r2_per_column(pred, y).mean())


def ridge_select(x: torch.Tensor, y: torch.Tensor, alphas=(1e-3, 1e-2, 1e-1, 1.0, 10.0)) -> tuple[float, float]:
    """(alpha, its R^2) chosen on the last fifth of the rows, fitted on the rest."""
    cut = len(x) * 4 // 5
    scores = {}
    for a in alphas:
        w, b = ridge_fit(x[:cut], y[:cut], a)
        scores[a] = r2_score(x[cut:].double() @ w + b, y[cut:])
    best = max(scores, key=scores.get)
    return best, scores[best]


def ridge_r2(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
             alphas=(1e-3, 1e-2, 1e-1, 1.0, 10.0)) -> dict:
    """R^2 on (test_x, test_y) of the ridge fit on train_x; alpha chosen on the last fifth of the training rows."""
    best, val_r2 = ridge_select(train_x, train_y, alphas)
    w, b = ridge_fit(train_x, train_y, best)
    return {"r2": r2_score(test_x.double() @ w + b, test_y), "alpha": best, "val_r2": val_r2,
            "train_rows": len(train_x), "test_rows": len(test_x)}


def frame_rows(tokens: torch.Tensor, positions: torch.Tensor, n: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to n frames drawn at random from every episode of tokens [E, T, N, D] and positions [E, T, 2]:
    (features [n, N * D] float, positions [n, 2]). Drawn, not the first n: those are a few neighbouring episodes."""
    x, y = tokens.flatten(2).flatten(0, 1), positions.flatten(0, 1)
    rows = torch.randperm(len(x), generator=generator)[:n]
    return x[rows].float(), y[rows].float()


def held_out_r2(train_tokens: torch.Tensor, train_positions: torch.Tensor, test_tokens: torch.Tensor,
                test_positions: torch.Tensor, train_rows: int, test_rows: int, generator: torch.Generator) -> dict:
    """Ridge R^2 of the positions read from frames of held-out episodes, fitted on frames of the training episodes
    (tokens [E, T, N, D], positions [E, T, 2]); train_rows / test_rows frames drawn from each side (frame_rows)."""
    train = frame_rows(train_tokens, train_positions, train_rows, generator)
    return ridge_r2(*train, *frame_rows(test_tokens, test_positions, test_rows, generator))


def position_gate(tokens: torch.Tensor, positions: torch.Tensor, test_fraction: float = 0.2,
                  max_rows: int = 6000, seed: int = 0) -> dict:
    """tokens [E, T, N, D] and positions [E, T, 2] of E episodes -> ridge R^2 on held-out episodes."""
    e = len(tokens)
    order = torch.randperm(e, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, int(e * test_fraction))
    train, test = order[n_test:], order[:n_test]
    return held_out_r2(tokens[train], positions[train], tokens[test], positions[test], max_rows, max_rows,
                       torch.Generator().manual_seed(seed + 1))
