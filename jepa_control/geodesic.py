"""A maze-aware goal distance learned from recorded trajectories: the shortest path to the goal over the grid cells
the agent's recorded (x, y) visited, linked only by steps the data actually took (search on the replay buffer,
Eysenbach et al. 2019). No recorded step crosses a wall, so the paths go round walls where a straight-line
distance pulls the agent into them (PointMaze's U: the goal behind the inner wall).

The distance of a position p is min over the visited cells c around p of |p - c| + D(c), with D the shortest path
from c to the goal (a cell's centre is its position); near the goal it is |p - goal| itself. Looking only at the 3 x
3 cells around p bounds the leak through a wall to ~2 cells: keep `cell` below half the thinnest wall.
"""
from __future__ import annotations

import heapq
import math

import torch

from jepa.errors import ConfigError


class TransitionGraph:
    """Args:
        positions: recorded (x, y) trajectories [E, T, 2] (e.g. read_trajectories(...)["proprio"]).
        cell: the grid's cell size, in the positions' units.
    """

    def __init__(self, positions: torch.Tensor, cell: float) -> None:
        if positions.dim() != 3 or positions.shape[-1] != 2:
            raise ConfigError(f"a transition graph needs (x, y) trajectories [episodes, steps, 2], got "
                              f"{tuple(positions.shape)}")
        if not cell > 0:
            raise ConfigError(f"graph cell size must be positive, got {cell}")
        positions = positions.double()
        self.cell = cell
        idx = torch.floor(positions / cell).long()
        self.origin = idx.flatten(0, 1).min(0).values - 1  # one empty cell of margin on every side
        idx = idx - self.origin
        self.shape = tuple(int(s) + 2 for s in idx.flatten(0, 1).max(0).values)
        flat = idx[..., 0] * self.shape[1] + idx[..., 1]
        self.visited = torch.zeros(self.shape[0] * self.shape[1], dtype=torch.bool)
        self.visited[flat.flatten()] = True
        centres = self.centres().reshape(-1, 2)
        src, dst = flat[:, :-1].flatten(), flat[:, 1:].flatten()
        moved = src != dst
        pairs = torch.stack([src[moved], dst[moved]], 1)
        pairs = torch.unique(torch.cat([pairs, pairs.flip(1)]), dim=0)  # steps are taken to be reversible
        self.neighbours: dict[int, list[tuple[int, float]]] = {}
        lengths = (centres[pairs[:, 0]] - centres[pairs[:, 1]]).norm(dim=-1)
        for (a, b), w in zip(pairs.tolist(), lengths.tolist()):
            self.neighbours.setdefault(a, []).append((b, w))
        self.edges = len(pairs) // 2
        self._goal = self._field = self._farthest = None

    def _centre(self, idx: torch.Tensor) -> torch.Tensor:
        """The position [..., 2] of the centre of the cells with grid index idx [..., 2]."""
        return (idx + self.origin + 0.5).double() * self.cell

    def centres(self) -> torch.Tensor:
        """The position of every cell's centre [H, W, 2]."""
        i, j = torch.meshgrid(torch.arange(self.shape[0]), torch.arange(self.shape[1]), indexing="ij")
        return self._centre(torch.stack([i, j], -1))

    def summary(self) -> dict:
        return {"cell": self.cell, "nodes": int(self.visited.sum()), "edges": self.edges,
                "components": self.components()}

    def components(self) -> int:
        """Connected groups of visited cells (1 when every recorded place can reach every other)."""
        seen, count = set(), 0
        for start in self.visited.nonzero().flatten().tolist():
            if start in seen:
                continue
            count, stack = count + 1, [start]
            seen.add(start)
            while stack:
                for b, _ in self.neighbours.get(stack.pop(), []):
                    if b not in seen:
                        seen.add(b)
                        stack.append(b)
        return count

    def _cell(self, p: torch.Tensor) -> torch.Tensor:
        """Grid index [..., 2] of positions [..., 2], clamped inside the margin."""
        idx = torch.floor(p.double() / self.cell).long() - self.origin
        return torch.stack([idx[..., 0].clamp(1, self.shape[0] - 2), idx[..., 1].clamp(1, self.shape[1] - 2)], -1)

    def _around(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices [..., 9] of the 3 x 3 cells around each position and the distances to their centres."""
        offsets = torch.tensor([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)])
        idx = self._cell(p)[..., None, :] + offsets
        flat = idx[..., 0] * self.shape[1] + idx[..., 1]
        return flat, (p.double()[..., None, :] - self._centre(idx)).norm(dim=-1)

    def field(self, goal: torch.Tensor) -> torch.Tensor:
        """Shortest-path distance from every cell to `goal` [2] (flat [H * W]; inf where never visited or cut off),
        by Dijkstra from the visited cells around the goal."""
        dist = torch.full((self.shape[0] * self.shape[1],), math.inf, dtype=torch.float64)
        flat, near = self._around(goal)
        heap = [(d, c) for c, d in zip(flat.tolist(), near.tolist()) if self.visited[c]]
        if not heap:
            raise ConfigError(f"goal {goal.tolist()} lies where the recorded trajectories never went (no visited "
                              f"cell of size {self.cell} next to it)")
        heapq.heapify(heap)
        while heap:
            d, a = heapq.heappop(heap)
            if d >= dist[a]:
                continue
            dist[a] = d
            for b, w in self.neighbours.get(a, []):
                if d + w < dist[b]:
                    heapq.heappush(heap, (d + w, b))
        return dist

    def __call__(self, positions: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """positions [..., 2], goal [2] -> the maze-aware distance [...] (float32). Positions with no visited
        cell around them (inside a wall, outside the data) cost the farthest reachable distance plus one cell."""
        key = tuple(round(v, 6) for v in goal.tolist())
        if key != self._goal:  # a plan asks with the same goal every step of an episode
            field = self.field(goal)
            self._goal, self._field, self._farthest = key, field, field[field.isfinite()].max()
        flat, near = self._around(positions)
        via = (near + self._field[flat]).min(-1).values
        direct = (positions.double() - goal.double()).norm(dim=-1)
        close = (self._cell(positions) - self._cell(goal)).abs().max(-1).values <= 1
        dist = torch.where(close, torch.minimum(direct, via), via)
        return torch.where(dist.isfinite(), dist, self._farthest + self.cell).float()


def load_graph(path: str, cell: float) -> TransitionGraph:
    """The transition graph of the recorded positions (the trajectories' proprio) in the shards at `path`."""
    from jepa_control.collect import positions as xy, read_trajectories

    positions = xy(read_trajectories(path)["proprio"])
    if positions.shape[-1] != 2:
        raise ConfigError(f"{path}: a geodesic distance needs recorded (x, y) positions as proprio, got "
                          f"{positions.shape[-1]} values per step")
    return TransitionGraph(positions, cell)
