"""k-nearest-neighbour classifier on frozen features: cosine similarity, temperature-weighted votes (as in DINO)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, query_x: torch.Tensor, k: int = 20,
                temperature: float = 0.07, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Class scores [Q, C] of each query from its k most cosine-similar training features.

    Each neighbour votes for its class with weight exp(similarity / temperature), so close neighbours count more
    than far ones and ties between classes are rare.
    """
    if len(train_x) == 0:
        raise ValueError("kNN needs at least one training feature")
    num_classes = num_classes or int(train_y.max()) + 1
    k = min(k, len(train_x))
    train_n = F.normalize(train_x.float(), dim=1)
    scores = []
    for q in query_x.float().split(chunk):
        sim = F.normalize(q, dim=1) @ train_n.T
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 20, temperature: float = 0.07) -> float:
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    pred = knn_predict(train_x, train_y, test_x, k, temperature, num_classes).argmax(1)
    return float((pred == test_y).float().mean())
