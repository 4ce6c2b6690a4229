"""The learned energy: AUROC, token shuffling, the per-sample hinge on a toy problem, training on a world model
(alone and the seed's joint step) and lambda * E in the planning cost."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from jepa.errors import ConfigError
from jepa_control.cost import GoalCost
from jepa_control.energy import Energy, auroc, shuffle_tokens


def test_auroc_is_the_pairwise_ranking_probability():
    g = torch.Generator().manual_seed(0)
    neg, pos = torch.randn(40, generator=g) + 0.5, torch.randn(30, generator=g)
    pos[:3] = neg[:3]  # ties count half
    brute = ((neg[:, None] > pos[None]).double() + 0.5 * (neg[:, None] == pos[None]).double()).mean()
    assert auroc(neg, pos) == pytest.approx(float(brute))
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0


def test_shuffle_tokens_permutes_each_state_on_its_own():
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).view(2, 3, 5, 4)
    y = shuffle_tokens(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)
    for i in range(2):
        for j in range(3):  # the same set of tokens, each token intact
            assert sorted(map(tuple, y[i, j].tolist())) == sorted(map(tuple, x[i, j].tolist()))


def _toy_states(n: int, g: torch.Generator, mixing: torch.Tensor) -> torch.Tensor:
    """Real states: 4 tokens of 8 channels, all a fixed function of a 2-D position (a 2-D manifold in 32-D)."""
    pos = torch.rand(n, 2, generator=g)
    return torch.tanh(pos @ mixing).view(n, 4, 8)


def test_hinge_energy_ranks_real_states_below_random_and_shuffled_ones():
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(2, 32, generator=g) * 2
    torch.manual_seed(0)
    energy = Energy(8, 4, hidden=64)
    opt = torch.optim.Adam(energy.parameters(), lr=3e-3)
    for _ in range(300):
        real = _toy_states(64, g, mixing)
        fake = torch.randn(64, 4, 8, generator=g) * real.std()
        loss = F.relu(1 + energy(real) - energy(fake)).mean() + F.relu(1 + energy(real) - energy(shuffle_tokens(real, g))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real = _toy_states(500, g, mixing)
        assert auroc(energy(torch.randn(500, 4, 8, generator=g) * real.std()), energy(real)) > 0.9
        assert auroc(energy(shuffle_tokens(real, g)), energy(real)) > 0.9


def test_energy_term_enters_the_cost():
    states, goal, actions = torch.zeros(3, 5, 4, 8), torch.zeros(4, 8), torch.zeros(3, 5, 2)
    energy = lambda s: s.flatten(2).sum(-1) + torch.arange(3.0)[:, None]  # noqa: E731  [S, H]
    assert torch.equal(GoalCost(energy=energy, energy_weight=0.5)(states, goal, actions), 0.5 * 5 * torch.arange(3.0))
    assert torch.equal(GoalCost(energy=energy, energy_weight=0.0)(states, goal, actions), torch.zeros(3))
    plain = GoalCost()
    assert torch.equal(plain.with_energy(energy, 0.5)(states, goal, actions), 0.5 * 5 * torch.arange(3.0))
    assert torch.equal(plain(states, goal, actions), torch.zeros(3))  # the plain cost is left as it was


@pytest.mark.parametrize("joint,negative_actions", [(False, "uniform"), (True, "shuffled")])
def test_energy_module_trains_alone_or_jointly_and_plans(tiny_control, joint, negative_actions):
    from jepa.cli import main
    from jepa_control import LatentTrajectoryDataModule
    from jepa_control.energy import EnergyModule
    from jepa_control.world_model import WorldModel
    from tests.conftest import tiny_trainer

    path, _, _ = tiny_control
    model = EnergyModule(WorldModel.from_checkpoint(str(path / "wm.ckpt")), hidden=16, train_predictor=joint,
                         hinge_weight=0.5, negative_actions=negative_actions)
    with pytest.raises(ConfigError, match="negative_actions"):
        EnergyModule(model.wm, negative_actions="gaussian")
    data = LatentTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, batch_size=8,
                                      gate_min_r2=0.0, cache_dir=str(path / "cache"))
    data.use_encoder(model.frozen_encoder)
    predictor = [p.clone() for p in model.wm.predictor.parameters()]
    trainer = tiny_trainer(path, max_steps=4, val_check_interval=2, check_val_every_n_epoch=None)
    trainer.fit(model, data)
    assert 0.0 <= float(trainer.callback_metrics["val/auroc_imagined"]) <= 1.0
    assert "val/auroc_shuffled" in trainer.callback_metrics
    changed = not all(torch.equal(a, b) for a, b in zip(predictor, model.wm.predictor.parameters()))
    assert changed == joint  # only the joint step trains the predictor
    trainer.save_checkpoint(path / "energy.ckpt")
    loaded = EnergyModule.from_checkpoint(str(path / "energy.ckpt"))
    z = torch.randn(2, 3, 4, 32)
    assert torch.equal(loaded.energy(z), model.energy.eval()(z)) and loaded.energy(z).shape == (2, 3)
    # the joint step's predictor is the one read back (its weights travel in the energy's own checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(loaded.wm.predictor.parameters(), model.wm.predictor.parameters()))
    code = main(["plan", "--world_model", str(path / "wm.ckpt"), "--energy", str(path / "energy.ckpt"),
                 "--energy_weights", "[0, 0.5]", "--env_options", "{img_size: 16}", "--planners", "[cem]",
                 "--planner_options", "{cem: {samples: 8, iterations: 1, elites: 2}}", "--horizon", "3",
                 "--oracle", "false", "--random_policy", "false", "--trajectory_replay", "false", "--episodes", "1",
                 "--seeds", "[0]", "--budget", "3", "--show", "1", "--out", str(path / "plan")])
    assert code == 0
    results = json.loads((path / "plan" / "results.json").read_text())["results"]
    assert set(results) == {"cem (world model)", "cem, lambda 0.5 * E (world model)"}
    assert (path / "plan" / "energy_landscape.png").is_file()
