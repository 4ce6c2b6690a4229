"""The maze-aware distance of jepa_control/geodesic.py: shortest paths over recorded steps go round walls."""
import pytest
import torch

from jepa.errors import ConfigError
from jepa_control.cost import GoalCost
from jepa_control.geodesic import TransitionGraph

# a U: the square [-2, 2]^2 without the wall [-0.5, 0.5] x [-2, 1]; the two arms meet above the wall (y > 1)
in_wall = lambda p: (p[..., 0].abs() < 0.5) & (p[..., 1] < 1.0)  # noqa: E731


def random_walks(episodes: int = 300, steps: int = 60, seed: int = 0) -> torch.Tensor:
    """Random walks that never enter the wall nor leave the square (a blocked step stays put)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(episodes * 4, 2, generator=g) * 4 - 2
    p = p[~in_wall(p)][:episodes]
    path = [p]
    for _ in range(steps):
        q = p + (torch.rand(p.shape, generator=g) - 0.5) * 0.5
        ok = ~in_wall(q) & (q.abs() < 2).all(-1)
        p = torch.where(ok[:, None], q, p)
        path.append(p)
    return torch.stack(path, 1)


@pytest.fixture(scope="module")
def graph():
    return TransitionGraph(random_walks(), cell=0.2)


def test_distance_goes_round_the_wall_not_through_it(graph):
    goal = torch.tensor([-1.5, -1.5])
    across = graph(torch.tensor([1.5, -1.5]), goal).item()  # 3 apart in a straight line, through the wall
    round_the_top = 2 * (1.0**2 + 2.5**2) ** 0.5 + 1.0  # via the wall's corners (-0.5, 1) and (0.5, 1): 6.39
    assert round_the_top - 0.2 < across < round_the_top + 1.0
    # on the goal's own side the distance is nearly the straight line, and exactly it next to the goal
    assert graph(torch.tensor([-1.5, 0.0]), goal).item() == pytest.approx(1.5, abs=0.3)
    assert graph(torch.tensor([-1.4, -1.45]), goal).item() == pytest.approx((0.1**2 + 0.05**2) ** 0.5, abs=1e-6)
    # and grows along the way round
    along = torch.tensor([[-1.5, 0.0], [-1.0, 1.5], [1.0, 1.5], [1.5, 0.0], [1.5, -1.5]])
    assert (graph(along, goal).diff() > 0).all()


def test_a_position_inside_the_wall_costs_more_than_any_reachable_one(graph):
    goal = torch.tensor([1.5, 1.5])
    reachable = graph(random_walks(seed=1).flatten(0, 1), goal)
    assert graph(torch.tensor([[0.0, -1.0]]), goal).item() > reachable.max().item()


def test_batched_positions_and_an_unvisited_goal(graph):
    positions = random_walks(episodes=8, steps=5, seed=2)  # [8, 6, 2], like the read-outs of [S, H] imagined states
    goal = torch.tensor([1.0, -1.5])
    d = graph(positions, goal)
    assert d.shape == (8, 6) and d.dtype == torch.float32
    assert torch.equal(d[3], graph(positions[3], goal))
    assert graph.summary()["components"] == 1
    with pytest.raises(ConfigError, match="never went"):
        graph(positions, torch.tensor([0.0, -1.0]))  # the middle of the wall
    with pytest.raises(ConfigError, match=r"\[episodes, steps, 2\]"):
        TransitionGraph(torch.zeros(3, 4, 3), cell=0.2)


def test_geodesic_cost_plans_on_the_read_outs(graph):
    readout = lambda z: z[..., :2]  # noqa: E731
    states = torch.tensor([[[1.5, -1.5, 9.0]], [[-1.5, 1.8, 9.0]]])  # [S=2, H=1, 3]: 3 vs 3.3 apart
    goal, actions = torch.tensor([-1.5, -1.5, 0.0]), torch.zeros(2, 1, 2)
    cost = GoalCost("geodesic", readout=readout, geodesic=graph)(states, goal, actions)
    euclid = GoalCost("position", readout=readout)(states, goal, actions)
    assert euclid[0] < euclid[1] and cost[0] > cost[1]  # the wall reverses which state is closer
    with pytest.raises(ConfigError, match="transition graph"):
        GoalCost("geodesic", readout=readout)
