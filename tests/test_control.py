"""Control: two-rooms env, collection, world model, planners, MPC, evaluation (tiny sizes, CPU)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from jepa_control.collect import collect, read_trajectories, rollout
from jepa_control.cost import GoalCost
from jepa_control.evaluate import RandomAgent, episode_seed, run_episodes, wilson
from jepa_control.mpc import MPCAgent, SimModel, WorkingMemory
from jepa_control.planners import (
    CEM,
    PLANNERS,
    GradientPlanner,
    make_planner,
)
from jepa_control.two_rooms import EVAL_LAYOUT_BASE, TwoRooms, TwoRoomsConfig
from jepa_control.world_model import ActionConditionedPredictor, block_causal_mask
from jepa.errors import ConfigError

SMALL = TwoRoomsConfig(img_size=16)


# ---------------------------------------------------------------- environment and data


def test_env_is_deterministic_and_layouts_are_held_out():
    a, b = TwoRooms(), TwoRooms()
    obs_a, info_a = a.reset(seed=5)
    obs_b, info_b = b.reset(seed=5)
    assert np.array_equal(obs_a, obs_b) and info_a["layout"] == info_b["layout"]
    for action in ([1.0, 0.3], [-0.5, 1.0], [0.2, -1.0]):
        oa, *_, ia = a.step(action)
        ob, *_, ib = b.step(action)
        assert np.array_equal(oa, ob) and np.array_equal(ia["pos"], ib["pos"])
    assert (info_a["pos"][0] < 0.5) != (info_a["goal"][0] < 0.5)  # start and goal in opposite rooms
    assert a.reset(seed=1)[1]["layout"] < EVAL_LAYOUT_BASE <= TwoRooms(eval_layouts=True).reset(seed=1)[1]["layout"]


def test_wall_blocks_except_at_the_door():
    env = TwoRooms()
    sim, cfg = env.sim, env.cfg
    door = torch.tensor(0.5)
    pos = torch.tensor([0.35, 0.1])  # left room, far below the door
    for _ in range(20):
        pos = sim.step(pos, torch.tensor([1.0, 0.0]), door)
    assert pos[0] < 0.5 - cfg.wall_half - cfg.agent_radius + 1e-6  # pressed against the wall, never through
    pos = torch.tensor([0.35, 0.5])  # level with the door
    for _ in range(5):
        pos = sim.step(pos, torch.tensor([1.0, 0.0]), door)
    assert pos[0] > 0.5  # went through
    frame = sim.render(torch.tensor([0.2, 0.2]), door).numpy()
    x = int(0.5 * cfg.img_size)
    assert (frame[int(0.1 * cfg.img_size), x] == [150, 150, 150]).all()  # wall pixel
    assert not (frame[int(0.5 * cfg.img_size), x] == [150, 150, 150]).all()  # door pixel is floor


def test_out_of_bounds_actions_are_clamped_and_counted():
    env = TwoRooms()
    env.reset(seed=0)
    start = env.pos.copy()
    *_, info = env.step([5.0, 0.0])
    assert info["clamped"] == 1
    assert np.linalg.norm(info["pos"] - start) <= env.cfg.max_step + 1e-6
    *_, info = env.step([0.5, 0.5])
    assert info["clamped"] == 1
    with pytest.raises(ConfigError, match="2 components"):
        env.step([0.1, 0.2, 0.3])


def test_collector_writes_what_it_claims(tmp_path):
    from jepa_control.collect_cli import main

    assert main(["--out", str(tmp_path), "--episodes", "3", "--steps", "5", "--quiet", "--seed", "7"]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["total"] == 3 and index["policy"] == "noisy"
    data = read_trajectories(tmp_path)
    assert data["frames"].shape == (3, 6, 64, 64, 3) and data["actions"].shape == (3, 5, 2)
    assert data["actions"].abs().max() <= 1.0
    expected = [traj for _, traj in collect(TwoRooms(), "noisy", 3, 5, seed=7)]
    for i, traj in enumerate(expected):
        assert np.array_equal(data["frames"][i].numpy(), traj["frames"])
        assert np.allclose(data["proprio"][i].numpy(), traj["proprio"])
    # replaying the stored actions from the stored start reproduces the stored frames
    env = TwoRooms()
    seed = int(np.random.default_rng([7, 1]).integers(2**31))
    replay = rollout(env, _Replay(data["actions"][1].numpy()), 5, seed)
    assert np.array_equal(replay["frames"], data["frames"][1].numpy())


def test_seek_policy_drifts_towards_the_goal_and_crosses_the_wall_more_often():
    env = TwoRooms()

    def stats(policy):
        trajs = [t for _, t in collect(env, policy, 40, 32, seed=3)]
        goals = [np.asarray(env.reset(seed=int(np.random.default_rng([3, i]).integers(2**31)))[1]["goal"])
                 for i in range(40)]
        final = np.mean([np.linalg.norm(t["proprio"][-1] - g) for t, g in zip(trajs, goals)])
        crossed = np.mean([(t["proprio"][0, 0] - 0.5) * (t["proprio"][-1, 0] - 0.5) < 0 for t in trajs])
        return final, crossed

    (walk_dist, walk_cross), (seek_dist, seek_cross) = stats("noisy"), stats("seek")
    assert seek_dist < 0.8 * walk_dist and seek_cross > walk_cross + 0.15, (walk_dist, seek_dist, walk_cross,
                                                                            seek_cross)


class _Replay:
    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def reset(self, env, info):
        self.t = 0

    def act(self, obs, info):
        self.t += 1
        return self.actions[self.t - 1]


def test_read_trajectories_skips_and_counts_bad_episodes(tmp_path):
    from jepa_control.collect_cli import main
    from data.shard_writer import write_shards

    main(["--out", str(tmp_path / "a"), "--episodes", "2", "--steps", "3", "--quiet"])
    good = read_trajectories(tmp_path / "a")
    bad = {"__key__": "zbad", "frames.npy": b"not an array", "actions.npy": b"x", "proprio.npy": b"x"}
    write_shards(iter([bad]), tmp_path / "a", "test", name="extra", progress=False)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = read_trajectories(tmp_path / "a")
    assert data["skipped"] == 1 and torch.equal(data["frames"], good["frames"])
    with pytest.raises(ConfigError, match="jepa collect"):
        read_trajectories(tmp_path / "empty")


# ---------------------------------------------------------------- world model


def test_block_causal_mask_frame_t_never_sees_t_plus_1():
    torch.manual_seed(0)
    model = ActionConditionedPredictor(token_dim=8, num_tokens=3, action_dim=2, embed_dim=16, depth=2, num_heads=2,
                                       max_frames=5).eval()
    z, a = torch.randn(2, 5, 3, 8), torch.randn(2, 5, 2)
    out = model(z, a)
    z2, a2 = z.clone(), a.clone()
    z2[:, 3:] += 5.0
    a2[:, 3:] -= 3.0
    out2 = model(z2, a2)
    assert torch.allclose(out[:, :3], out2[:, :3], atol=1e-6)  # frames 0..2 unaffected by frames 3, 4
    assert not torch.allclose(out[:, 3:], out2[:, 3:])
    mask = block_causal_mask(3, 2)
    assert mask[1, 2] == 0 and mask[2, 1] == 1 and mask[3, 2] == 1  # token 1 (frame 0) cannot see token 2 (frame 1)
    assert torch.equal(model(z, a, last_only=True), out[:, -1:])  # what a rollout step computes


def test_fold_concatenates_each_block_of_the_finer_grid_into_one_token():
    from jepa_control.encoding import FrozenEncoder
    from jepa.vit import VisionTransformer

    torch.manual_seed(0)
    encoder = VisionTransformer(16, 2, 3, 8, 1, 2)  # an 8 x 8 grid of 8-D tokens
    frames = torch.randint(0, 256, (1, 2, 16, 16, 3), dtype=torch.uint8)
    mean, std = [0.5] * 3, [0.25] * 3
    fine = FrozenEncoder(encoder, mean, std, pool_grid=4)(frames)  # [1, 2, 16, 8], row-major 4 x 4
    folded = FrozenEncoder(encoder, mean, std, pool_grid=2, fold=2)
    out = folded(frames)
    assert out.shape == (1, 2, 4, 32) and folded.dim == 32 and folded.num_tokens == 4
    for row, col in ((0, 0), (0, 1), (1, 0), (1, 1)):  # token (row, col) = its 2 x 2 block of fine tokens
        block = [fine[:, :, (2 * row + i) * 4 + 2 * col + j] for i in (0, 1) for j in (0, 1)]
        assert torch.equal(out[:, :, row * 2 + col], torch.cat(block, -1))
    with pytest.raises(ConfigError, match="pool_grid 3 x fold 2 must divide the encoder's 8x8 grid"):
        FrozenEncoder(encoder, mean, std, pool_grid=3, fold=2)


def test_world_model_learns_a_linear_system():
    g = torch.Generator().manual_seed(0)
    d = 6
    A = torch.linalg.qr(torch.randn(d, d, generator=g))[0] * 0.9
    B = torch.randn(2, d, generator=g) * 0.5

    def batch(n=64, t=4):
        z = [torch.randn(n, d, generator=g)]
        a = torch.rand(n, t, 2, generator=g) * 2 - 1
        for i in range(t - 1):
            z.append(z[-1] @ A + a[:, i] @ B)
        return torch.stack(z, 1)[:, :, None], a

    torch.manual_seed(0)
    model = ActionConditionedPredictor(d, 1, 2, embed_dim=64, depth=2, num_heads=4, max_frames=4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(400):
        z, a = batch()
        loss = (model(z[:, :-1], a[:, :-1]) - z[:, 1:]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    z, a = batch(256)
    with torch.no_grad():
        pred = model.rollout(z[:, :1], a[:, :0], a[:, :3], context=4)
    err = (pred - z[:, 1:]).abs().mean()
    copy_last = (z[:, :1] - z[:, 1:]).abs().mean()
    assert err < 0.25 * copy_last, (float(err), float(copy_last))


def test_motion_input_lets_the_predictor_see_changes_a_thousandth_of_the_latents_scale():
    """Constant velocity at 1e-3 of the latents' scale: with `motion` (change in, change out, in units of the data's
    change std) the predictor extrapolates it; the same predictor on the raw latents does not get far below
    "nothing moves"."""
    from jepa_control.world_model import change_std

    g = torch.Generator().manual_seed(0)

    def batch(n=128, t=4):
        base, v = torch.randn(n, 1, 2, 8, generator=g), torch.randn(n, 1, 2, 8, generator=g) * 1e-3
        return base + torch.arange(t).view(1, t, 1, 1) * v, torch.zeros(n, t - 1, 2)

    errors = {}
    for motion in (False, True):
        torch.manual_seed(0)
        model = ActionConditionedPredictor(8, 2, 2, embed_dim=32, depth=1, num_heads=2, max_frames=2, motion=motion)
        if motion:
            model.change_scale.copy_(change_std(batch(512)[0]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(300):
            z, a = batch()
            loss = (model(z[:, :2], a[:, :2]) - z[:, 1:3]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        z, a = batch(512)
        with torch.no_grad():
            pred = model.rollout(z[:, :2], a[:, :1], a[:, 1:3], context=2)
        errors[motion] = float((pred - z[:, 2:]).abs().mean() / (z[:, 1:2] - z[:, 2:]).abs().mean())
    assert errors[True] < 0.2 and errors[False] > 0.5, errors


def test_mse_loss_pays_for_the_expected_move_where_l1_settles_on_nothing_moves(tmp_path):
    """A latent that moves by +1 in 40 % of the samples, unpredictably: L1's optimum is the median change (0),
    MSE's the mean (0.4); the option picks the loss, and an unknown name is refused."""
    from jepa_control.world_model import LATENT_LOSSES

    torch.manual_seed(0)
    moved = {}
    for name in ("l1", "mse"):
        model = ActionConditionedPredictor(1, 1, 2, embed_dim=16, depth=1, num_heads=2, max_frames=1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            z = torch.zeros(256, 1, 1, 1)
            target = (torch.rand(256, 1, 1, 1) < 0.4).float()
            loss = LATENT_LOSSES[name](model(z, torch.zeros(256, 1, 2)), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            moved[name] = float(model(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 2)))
    assert abs(moved["l1"]) < 0.1 and abs(moved["mse"] - 0.4) < 0.1, moved
    from jepa_control import WorldModel

    with pytest.raises(ConfigError, match="model.loss = 'huber': choose one of"):
        WorldModel(str(tmp_path / "unused"), loss="huber")


# ---------------------------------------------------------------- planners, cost, MPC


def _quadratic(target):
    return lambda a: (a - target).pow(2).sum((1, 2))


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_every_planner_solves_a_quadratic(name):
    target = torch.tensor([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]])
    options = {"gradient": {"steps": 100}, "cem_gradient": {"steps": 50}}.get(name, {})
    plan = make_planner(name, 3, 2, seed=0, **options).plan(_quadratic(target))
    assert (plan.actions - target).abs().max() < 0.1, plan.actions
    assert plan.rollouts > 0


def test_gradient_planner_respects_the_bounds():
    target = torch.tensor([[2.0, -3.0], [0.5, 5.0]])  # partly outside [-1, 1]
    plan = GradientPlanner(2, 2, steps=100, lr=0.2).plan(_quadratic(target))
    assert plan.actions.min() >= -1 and plan.actions.max() <= 1
    assert torch.allclose(plan.actions, target.clamp(-1, 1), atol=1e-3)


def test_cost_sums_over_the_horizon_or_takes_the_last_state():
    states = torch.tensor([[[0.0], [1.0], [2.0]]])  # [S=1, H=3, 1]
    goal, actions = torch.tensor([2.0]), torch.ones(1, 3, 2)
    assert GoalCost("euclid")(states, goal, actions).item() == pytest.approx(3.0)
    assert GoalCost("euclid", "last")(states, goal, actions).item() == pytest.approx(0.0)
    assert GoalCost("mse", action_weight=0.5)(states, goal, actions).item() == pytest.approx(5.0 + 3.0)


def test_position_distance_measures_between_read_outs():
    """distance 'position': the euclidean distance between read-outs of the states and of the goal, so it grows
    with the read-out's distance where a latent distance would not."""
    readout = lambda z: z[..., :2] * 2  # noqa: E731
    states = torch.tensor([[[0.0, 0.0, 5.0], [3.0, 4.0, -5.0]]])  # [S=1, H=2, 3]
    goal, actions = torch.zeros(3), torch.zeros(1, 2, 2)
    assert GoalCost("position", readout=readout)(states, goal, actions).item() == pytest.approx(0.0 + 10.0)
    with pytest.raises(ConfigError, match="read-out"):
        GoalCost("position")


def test_rest_weight_prefers_plans_that_end_at_rest():
    """Two plans with the same summed goal distance: one stops on the goal, one sweeps through it at the last step.
    Only rest_weight tells them apart, by the read-out distance moved in the last step."""
    readout = lambda z: z[..., :2]  # noqa: E731
    goal, actions = torch.zeros(2), torch.zeros(2, 3, 2)
    states = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]],     # arrives, stays
                           [[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]])   # sweeps through
    plain = GoalCost("position", readout=readout)(states, goal, actions)
    assert plain[0].item() == pytest.approx(plain[1].item())
    rested = GoalCost("position", readout=readout, rest_weight=0.5)(states, goal, actions)
    assert rested.tolist() == pytest.approx([2.0, 2.0 + 0.5])
    with pytest.raises(ConfigError, match="read-out"):
        GoalCost("mse", rest_weight=1.0)
    with pytest.raises(ConfigError, match="rest_weight"):
        GoalCost("position", readout=readout, rest_weight=-1.0)


class _SpyPlanner(CEM):
    def __init__(self):
        super().__init__(horizon=4, action_dim=2, samples=8, iterations=1, elites=2)
        self.inits = []

    def plan(self, cost_fn, init=None):
        self.inits.append(None if init is None else init.clone())
        plan = super().plan(cost_fn, init)
        plan.actions = torch.arange(8, dtype=torch.float32).view(4, 2) / 10 - 0.4 + 0.01 * len(self.inits)
        return plan


def test_mpc_replans_after_executing_and_warm_starts_from_the_shifted_plan():
    env = TwoRooms()
    obs, info = env.reset(seed=0)
    spy = _SpyPlanner()
    agent = MPCAgent(SimModel(env.sim), spy, GoalCost("euclid"), execute=3)
    agent.reset(env.goal_observation(), info)
    for _ in range(7):
        obs, *_, info = env.step(agent.act(obs, info))
    assert len(spy.inits) == 3 and spy.inits[0] is None  # replanned at steps 0, 3, 6
    first = torch.arange(8, dtype=torch.float32).view(4, 2) / 10 - 0.4 + 0.01
    assert torch.equal(spy.inits[1], first[3:].expand(4, 2))  # the unexecuted rest, its last action repeated
    assert agent.memory.error is not None  # predicted-vs-observed error tracked (the simulator: exactly 0)
    assert agent.memory.error == pytest.approx(0.0, abs=1e-6)


def test_mpc_holds_each_planned_action_for_action_repeat_steps():
    env = TwoRooms()
    obs, info = env.reset(seed=0)
    seen = {}

    class Recording(SimModel):
        def rollout(self, states, between, actions):
            seen.setdefault("rolled", actions.shape[1])
            return super().rollout(states, between, actions)

    class Scored(GoalCost):
        def __call__(self, states, goal, actions):
            seen.setdefault("scored", (states.shape[1], actions.shape[1]))
            return super().__call__(states, goal, actions)

    spy = _SpyPlanner()
    agent = MPCAgent(Recording(env.sim), spy, Scored("euclid"), execute=2, action_repeat=3)
    agent.reset(env.goal_observation(), info)
    executed = []
    for _ in range(7):
        executed.append(agent.act(obs, info))
        obs, *_, info = env.step(executed[-1])
    first = torch.arange(8, dtype=torch.float32).view(4, 2) / 10 - 0.4 + 0.01
    assert len(spy.inits) == 2  # replanned after 2 planned actions = 6 env steps
    assert torch.equal(torch.tensor(np.stack(executed[:6])), first[:2].repeat_interleave(3, 0))
    assert seen == {"rolled": 12, "scored": (4, 4)}  # 4 planned actions imagined over 12 steps, scored 4 times
    assert torch.equal(spy.inits[1], torch.cat([first[2:], first[3:].expand(2, 2)]))  # shifted by planned actions
    assert agent.memory.error == pytest.approx(0.0, abs=1e-6)  # expected states are per env step


@pytest.mark.parametrize("planner", ["cem", "mppi"])
def test_sampling_planners_always_try_doing_nothing(planner):
    # zero actions are optimal; a warm start far from them and 3 samples: only the do-nothing candidate is exact
    plan = make_planner(planner, 6, 2, samples=3, iterations=1, **({"elites": 1} if planner == "cem" else {})).plan(
        lambda a: a.abs().sum((1, 2)), init=torch.full((6, 2), 0.8))
    assert torch.equal(plan.actions, torch.zeros(6, 2)) and plan.cost == 0.0


def test_cem_mean_result_averages_the_noise_that_the_best_sample_keeps():
    # an uninformative cost: the cheapest of 256 samples is one Gaussian draw (std 0.7), the elites' mean of all
    # 256 is near the start; "mean" is scored once more, and the default still returns the cheapest sample
    def cost(actions):
        return torch.rand(len(actions), generator=torch.Generator().manual_seed(len(actions)))

    best = CEM(8, 2, samples=256, iterations=1, elites=256, seed=0).plan(cost)
    mean = CEM(8, 2, samples=256, iterations=1, elites=256, seed=0, result="mean").plan(cost)
    assert best.actions.abs().max() > 0.5 and mean.actions.abs().max() < 0.25
    assert mean.cost == float(cost(mean.actions[None])[0]) and (best.rollouts, mean.rollouts) == (256, 257)
    with pytest.raises(ConfigError, match="result = 'median'"):
        CEM(8, 2, result="median")


def test_cem_with_one_elite_keeps_a_finite_search():
    # one elite has no sample std: the next iteration must still sample finite candidates
    plan = CEM(4, 2, samples=8, iterations=3, elites=1, seed=0).plan(lambda a: (a - 0.3).pow(2).sum((1, 2)))
    assert torch.isfinite(plan.actions).all() and plan.cost < (0.3 ** 2) * 8


def test_action_repeat_takes_the_oracle_round_the_wall():
    # held-out episodes where the summed goal distance over 12 single steps keeps the oracle at the wall (its local
    # minimum); 8 actions held 2 steps each (configs/control/plan_two_rooms.yaml) look far enough ahead to go
    # through the door (README, "Control")
    env = TwoRooms(eval_layouts=True)

    def final_distances(agent_options):
        distances = []
        for seed, i in [(0, 14), (2, 6)]:
            agent = MPCAgent(SimModel(env.sim), cost=GoalCost("euclid"), **agent_options(seed))
            obs, info = env.reset(seed=episode_seed(seed, i))
            agent.reset(env.goal_observation(), info)
            for _ in range(env.max_steps):
                obs, *_, info = env.step(agent.act(obs, info))
            distances.append(info["distance"])
        return distances

    single = final_distances(agent_options=lambda s: dict(
        planner=CEM(12, 2, samples=256, iterations=3, elites=24, seed=s), execute=4))
    held = final_distances(agent_options=lambda s: dict(
        planner=CEM(8, 2, samples=192, iterations=3, elites=16, seed=s), execute=2, action_repeat=2))
    assert min(single) > 0.2 and max(held) < 0.1, (single, held)


def test_working_memory_keeps_the_last_k_states_and_actions_between_them():
    mem = WorkingMemory(history=3)
    for i in range(5):
        mem.observe(torch.full((2,), float(i)))
        mem.did(torch.full((2,), 10.0 + i))
    states, between = mem.history(2)
    assert states[:, 0].tolist() == [2.0, 3.0, 4.0]
    assert between[:, 0].tolist() == [12.0, 13.0]  # the actions from state 2 to 3 and 3 to 4


def test_oracle_planner_succeeds_on_two_rooms_and_random_does_not():
    env = TwoRooms(eval_layouts=True)
    oracle = run_episodes(env, lambda s: MPCAgent(SimModel(env.sim), CEM(12, 2, seed=s), GoalCost("euclid")),
                          episodes=6, seeds=[0])
    assert oracle["success"] >= 5 / 6, oracle["records"]
    rand = run_episodes(env, lambda s: RandomAgent(env, s), episodes=6, seeds=[0])
    assert rand["success"] <= 1 / 6
    assert oracle["seconds_per_plan"] > 0 and oracle["rollouts_per_plan"] == 256 * 4


def test_wilson_interval():
    lo, hi = wilson(9, 10)
    assert lo == pytest.approx(0.5958, abs=1e-3) and hi == pytest.approx(0.9821, abs=1e-3)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == pytest.approx(1.0)


# ---------------------------------------------------------------- the whole path, tiny


def test_world_model_fit_gate_checkpoint_and_planning(tiny_control):
    from jepa_control.mpc import LatentModel
    from jepa_control.world_model import load_world_model

    path, model, data = tiny_control
    assert data.gate is not None and -10 < data.gate["r2"] <= 1 and (path / "gate.json").is_file()
    loaded = load_world_model(str(path / "wm.ckpt"))
    z = torch.randn(2, 2, 4, 32)
    a = torch.rand(2, 2, 2)
    assert torch.equal(loaded.predictor(z, a), model.predictor.eval()(z, a))
    env = TwoRooms(SMALL, eval_layouts=True)
    r = run_episodes(env, lambda s: MPCAgent(LatentModel(loaded), CEM(4, 2, samples=16, iterations=2, elites=4),
                                             GoalCost()), episodes=1, seeds=[0], budget=5)
    assert r["episodes"] == 1 and r["plans"] == 2
    with pytest.raises(ConfigError, match="2-D actions"):
        loaded.predictor(z, torch.rand(2, 2, 3))


def test_a_world_model_saved_before_newer_options_loads_with_their_defaults_and_trains(tiny_control):
    """A checkpoint whose hyperparameters predate rollout_history / position_weight (two-rooms' world model of
    earlier sessions) loads with those options' defaults recorded, so its losses (the joint step) run."""
    from jepa_control.world_model import load_world_model
    from jepa.checkpoint import load_checkpoint

    path, model, data = tiny_control
    ckpt = load_checkpoint(str(path / "wm.ckpt"))
    for key in ("rollout_history", "position_weight"):
        del ckpt["hyper_parameters"][key]
    torch.save(ckpt, path / "old.ckpt")
    loaded = load_world_model(str(path / "old.ckpt"))
    assert loaded.hparams.rollout_history == 1 and loaded.hparams.position_weight == 0.0
    batch = next(iter(data.train_dataloader()))
    losses = loaded.losses(batch)
    assert set(losses) == {"teacher_forcing", "rollout", "loss"} and torch.isfinite(losses["loss"])


def test_folded_whitening_and_change_scale_equal_the_maps_applied_in_turn():
    """The predictor folds its whitening and change scale into its input / motion / output layers (io_weights);
    its outputs must equal those of the maps applied one after the other: whiten, scale the change, the layers,
    unscale, unwhiten."""
    torch.manual_seed(0)
    d = 6
    model = ActionConditionedPredictor(d, 2, 2, embed_dim=16, depth=1, num_heads=2, max_frames=3, motion=True,
                                       whiten=True).eval()
    q, _ = torch.linalg.qr(torch.randn(d, d))
    s = torch.rand(d) + 0.5
    model.latent_mean.copy_(torch.randn(d))
    model.whitener.copy_(q / s)
    model.unwhitener.copy_((q * s).T)
    model.change_scale.copy_(torch.rand(d) + 0.1)
    nn.init.normal_(model.out.weight)
    nn.init.normal_(model.out.bias)
    z, a = torch.randn(4, 3, 2, d), torch.randn(4, 3, 2)

    def reference(z, a):
        w = (z - model.latent_mean) @ model.whitener
        x = model.latent_in(w)
        change = torch.cat([torch.zeros_like(w[:, :1]), w[:, 1:] - w[:, :-1]], 1)
        x = x + model.motion_in(change / model.change_scale)
        x = torch.cat([model.action_in(a)[:, :, None], x], 2)
        x = (x + model.slot_pos + model.time_pos[:, :3].float()).flatten(1, 2)
        for block in model.blocks:
            x = block(x, attn_mask=block_causal_mask(3, 3))
        x = x.unflatten(1, (3, 3))[:, :, 1:]
        return z + (model.out(model.norm(x)) * model.change_scale) @ model.unwhitener

    with torch.no_grad():
        expected = reference(z, a)
        assert (expected - z).abs().mean() > 0.1  # the output layer is not zero: the test sees the folded maps
        assert torch.allclose(model(z, a), expected, atol=1e-5)
        assert torch.allclose(model(z, a, last_only=True), expected[:, -1:], atol=1e-5)


def test_whitened_motion_world_model_measures_its_data_and_round_trips(tiny_control):
    """`whiten` + `motion`: at fit start the predictor's whitening is measured on the training latents (unit
    variance in every principal direction, unwhitener its inverse) and its change scale on the whitened changes;
    both travel with the checkpoint."""
    from conftest import tiny_trainer

    from jepa_control import WorldModel
    from jepa_control.gate import ridge_fit, ridge_select
    from jepa_control.world_model import change_std, load_world_model

    def readout_rows(windows):  # the rows the read-out is fitted on (all of them: fewer than its max_rows)
        x, y = windows.latents.float().flatten(2).flatten(0, 1), windows.positions.float().flatten(0, 1)
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        return x[rows], y[rows]

    path, _, data = tiny_control
    model = WorldModel(str(path / "encoder"), pool_grid=2, embed_dim=32, depth=1, num_heads=2, context=2,
                       rollout_steps=2, warmup_steps=1, motion=True, whiten=True, loss="mse", position_readout=True)
    trainer = tiny_trainer(path / "white", max_steps=3)
    trainer.fit(model, data)
    # the position read-out is the ridge fit of the recorded positions on the training latents
    alpha, _ = ridge_select(*readout_rows(data.train_set))
    weight, bias = ridge_fit(*readout_rows(data.train_set), alpha)
    latents, positions = data.train_set.latents.float(), data.train_set.positions
    expected = latents.flatten(2).double() @ weight + bias
    assert torch.allclose(model.read_position(latents).double(), expected, atol=1e-3)
    assert ((model.read_position(latents) - positions) ** 2).mean() < 0.1 * positions.var(dim=(0, 1)).mean()
    p = model.predictor
    tokens = data.train_set.latents.float()
    white = (tokens - p.latent_mean) @ p.whitener
    var = torch.cov(white.flatten(0, 2).T).diagonal()
    assert ((var - 1).abs() < 1e-2).float().mean() > 0.5 and var.max() < 1.01  # floored directions fall below 1
    assert torch.allclose(p.whitener @ p.unwhitener, torch.eye(32), atol=1e-4)
    assert torch.allclose(p.change_scale, change_std(white))
    trainer.save_checkpoint(path / "white.ckpt")
    loaded = load_world_model(str(path / "white.ckpt"))
    z, a = tokens[:2, :2], torch.rand(2, 2, 2)
    assert torch.equal(loaded.predictor(z, a), p.eval()(z, a))
    assert torch.equal(loaded.read_position(z), model.read_position(z))


def test_position_weight_adds_the_read_out_error_of_the_predictions(tiny_control):
    """model.position_weight: the loss also pays for where the read-out of each prediction lands against the
    read-out of the true next latents, over teacher forcing and rollout alike."""
    import torch.nn.functional as F
    from conftest import tiny_trainer

    from jepa_control import WorldModel

    path, _, data = tiny_control
    with pytest.raises(ConfigError, match="position_readout"):
        WorldModel(str(path / "encoder"), pool_grid=2, position_weight=1.0)
    model = WorldModel(str(path / "encoder"), pool_grid=2, embed_dim=32, depth=1, num_heads=2, context=2,
                       rollout_steps=2, warmup_steps=1, position_readout=True, position_weight=0.5)
    tiny_trainer(path / "posw", max_steps=2).fit(model, data)
    batch = next(iter(data.train_dataloader()))
    out = model.losses(batch)
    read = model.read_position
    latents, actions = batch["latents"], batch["actions"]
    pairs = [model.teacher_forced(latents, actions), model.rolled_out(latents, actions)]
    expected = sum(F.mse_loss(read(p), read(t)) for p, t in pairs) / 2
    assert out["position"].item() > 0 and torch.allclose(out["position"], expected)
    assert torch.allclose(out["loss"], out["teacher_forcing"] + out["rollout"] + 0.5 * expected)
    out["loss"].backward()
    assert model.predictor.out.weight.grad.abs().sum() > 0
    # jepa plan's rollout error then also reports where the imagined positions land against the recorded ones
    from jepa_control.plan_cli import rollout_errors

    errors = rollout_errors(model, str(path / "val"), horizon=3)
    recorded = read_trajectories(path / "val")["proprio"].float()
    assert len(errors["position"]["world_model"]) == len(errors["latent_l1"]["world_model"]) == 3
    held = (recorded[:, 1:4] - recorded[:, :1]).norm(dim=-1).mean(0)
    assert torch.allclose(torch.tensor(errors["position"]["no_change"]), held, atol=1e-5)


def test_rollout_loss_starts_from_rollout_history_true_frames(tiny_control):
    """model.rollout_history: the rollout loss starts from that many true frames, as planning starts from the
    working memory's last frames (an untrained predictor says "nothing moves", so its first imagined frame is the
    last true one it was given), and its targets are the frames after them."""
    from jepa_control import WorldModel

    path, _, _ = tiny_control
    latents, actions = torch.randn(3, 5, 4, 32), torch.rand(3, 4, 2)
    for k in (1, 2):
        model = WorldModel(str(path / "encoder"), pool_grid=2, embed_dim=32, depth=1, num_heads=2, context=2,
                           rollout_steps=3, rollout_history=k)
        preds, targets = model.rolled_out(latents, actions)
        assert torch.allclose(preds[:, 0], latents[:, k - 1], atol=1e-6) and torch.equal(targets, latents[:, k : k + 3])
    with pytest.raises(ConfigError, match="too short"):
        model.losses({"latents": latents[:, :4], "actions": actions[:, :3]})  # 2 + 3 frames needed
    with pytest.raises(ConfigError, match="rollout_history"):
        WorldModel(str(path / "encoder"), pool_grid=2, context=2, rollout_history=3)


def test_ridge_fit_returns_the_linear_map_in_raw_coordinates():
    from jepa_control.gate import ridge_fit, ridge_r2

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0, 5.0]) + 7.0
    w, b = torch.randn(6, 2, generator=g), torch.tensor([1.5, -2.0])
    y = x @ w + b
    fw, fb = ridge_fit(x, y, 1e-9)
    assert torch.allclose(fw.float(), w, atol=1e-4) and torch.allclose(fb.float(), b, atol=1e-3)
    assert ridge_r2(x[:300], y[:300], x[300:], y[300:])["r2"] > 0.999


def test_gate_stops_training_when_the_encoder_cannot_see_the_agent(tiny_control):
    from jepa_control import LatentTrajectoryDataModule

    path, model, _ = tiny_control
    data = LatentTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, gate_min_r2=1.01,
                                      cache_dir=str(path / "cache"))
    with pytest.raises(ConfigError, match="position gate failed"):
        data.prepare(model.frozen_encoder)


def test_encoder_that_does_not_match_the_frames_is_refused(tiny_control):
    path, model, _ = tiny_control
    with pytest.raises(ConfigError, match="16x16 frames with 3 channels, the environment gives 64x64 with 3"):
        model.frozen_encoder.check_frames(TwoRooms().observation_shape)


def test_jepa_plan_end_to_end(tiny_control):
    from jepa.cli import main

    path, _, _ = tiny_control
    code = main(["plan", "--world_model", str(path / "wm.ckpt"), "--env_options", "{img_size: 16}",
                 "--planners", "[cem, mppi]", "--planner_options", "{cem: {samples: 16, iterations: 2, elites: 4},"
                 " mppi: {samples: 16, iterations: 2}}", "--horizon", "4", "--episodes", "1", "--seeds", "[0]",
                 "--budget", "4", "--show", "1", "--rollout_data", str(path / "val"), "--out", str(path / "plan")])
    assert code == 0
    record = json.loads((path / "plan" / "results.json").read_text())
    assert set(record["results"]) == {"random policy", "cem (world model)", "cem (oracle simulator)",
                                      "mppi (world model)", "mppi (oracle simulator)"}
    assert len(record["rollout_l1_by_horizon"]["world_model"]) == len(record["rollout_l1_by_horizon"]["no_change"]) == 4
    assert (path / "plan" / "episodes.png").stat().st_size > 0 and (path / "plan" / "rollout_error.png").is_file()
    assert (path / "plan" / "pareto.png").is_file() and (path / "plan" / "cost_landscape.png").is_file()
    # a world model trained for 2-D actions refuses an environment with a different action size: checked by name
    code = main(["plan", "--world_model", str(path / "wm.ckpt"), "--episodes", "1", "--seeds", "[0]"])
    assert code == 2  # the 16x16 encoder does not fit the default 64x64 frames: a clear error, not a crash
    code = main(["plan", "--world_model", str(path / "wm.ckpt"), "--env_options", "{img_size: 16}", "--distance",
                 "position", "--episodes", "1", "--seeds", "[0]"])
    assert code == 2  # --distance position needs a world model fitted with a position read-out


def test_collect_with_the_planner_then_retrain_on_random_plus_planned_data(tiny_control):
    from conftest import tiny_trainer

    from jepa_control import LatentTrajectoryDataModule, WorldModel
    from jepa.cli import main

    path, model, _ = tiny_control
    code = main(["collect", "--policy", "plan", "--world_model", str(path / "wm.ckpt"), "--env_options",
                 '{"img_size": 16}', "--planner_options", '{"samples": 8, "iterations": 1, "elites": 2}',
                 "--horizon", "3", "--execute", "2", "--action_repeat", "2", "--noise", "0.1", "--episodes", "3",
                 "--steps", "6", "--out", str(path / "planned"), "--quiet"])
    assert code == 0
    planned = read_trajectories(path / "planned")
    assert planned["frames"].shape == (3, 7, 16, 16, 3) and planned["actions"].shape == (3, 6, 2)
    assert planned["actions"].abs().max() <= 1 and planned["skipped"] == 0
    index = json.loads((path / "planned" / "index.json").read_text())
    assert index["policy"] == "plan" and index["world_model"] == str(path / "wm.ckpt") and index["action_repeat"] == 2
    # round 2: a world model on random + planned episodes, read as one training set
    data = LatentTrajectoryDataModule([str(path / "train"), str(path / "planned")], str(path / "val"), window=3,
                                      batch_size=8, gate_min_r2=0.0, cache_dir=str(path / "cache"))
    data.prepare(model.frozen_encoder)
    assert len(data.train_set.latents) == 12 + 3
    second = WorldModel(str(path / "encoder"), pool_grid=2, embed_dim=32, depth=1, num_heads=2, context=2,
                        rollout_steps=2, warmup_steps=1)
    tiny_trainer(path, max_steps=2).fit(second, data)
    assert main(["collect", "--policy", "plan", "--episodes", "1", "--out", str(path / "x")]) == 2  # no world model


@pytest.mark.parametrize("name", ["plan_two_rooms", "plan_point_maze", "plan_reacher", "plan_push_t",
                                  "seed_mode1_refine"])
def test_plan_configs_parse_with_the_plan_command(name):
    from pathlib import Path

    from jepa_control.plan_cli import parser

    config = Path(__file__).resolve().parents[1] / "configs" / "control" / f"{name}.yaml"
    cfg = parser().parse_args(["--config", str(config), "--world_model", "wm.ckpt"])
    assert cfg.horizon >= 1 and cfg.action_repeat >= 1 and cfg.planners
