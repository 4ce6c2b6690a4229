"""The goal ranking: with the true simulator as the model and the final distance as the cost, the trajectory's own
actions reach the goal exactly, so no random sequence ranks above them; a model that knows nothing ranks them like
chance."""
import torch


def test_the_true_simulator_ranks_the_reaching_actions_first_and_a_blind_model_does_not():
    from benchmarks.goal_ranking import goal_ranking
    from jepa_control.cost import GoalCost
    from jepa_control.mpc import SimModel
    from jepa_control.protocols import make_protocol
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

    env = TwoRooms(TwoRoomsConfig(img_size=16), eval_layouts=True)
    protocol = make_protocol("offline_goal", 10, "noisy")
    true = goal_ranking(SimModel(env.sim), GoalCost("euclid", "last"), env, protocol, seed=100, episodes=4, repeat=5,
                        samples=64, budget=20)
    assert true["replay_success"] == 1.0 and true["true_rank"] == 0.0
    assert 0.0 <= true["held_true_rank"] <= 1.0 and true["episodes"] == 4

    class Blind(SimModel):  # imagines a random place whatever the actions
        def rollout(self, states, actions_between, actions):
            return torch.rand(len(actions), actions.shape[1], 2)

    torch.manual_seed(0)
    blind = goal_ranking(Blind(env.sim), GoalCost("euclid", "last"), env, protocol, seed=100, episodes=4, repeat=5,
                         samples=64, budget=20)
    assert 0.2 < blind["true_rank"] < 0.8


def test_a_planner_beats_the_true_actions_only_in_a_model_that_is_wrong():
    """plan_below_true: on the true simulator nothing scores below the actions that reach the goal exactly; a blind
    model's cost is beaten by the planner, which then ends far from the goal in the env."""
    from benchmarks.goal_ranking import goal_ranking
    from jepa_control.cost import GoalCost
    from jepa_control.mpc import SimModel
    from jepa_control.planners import make_planner
    from jepa_control.protocols import make_protocol
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

    class Blind(SimModel):
        def rollout(self, states, actions_between, actions):
            return torch.rand(len(actions), actions.shape[1], 2)

    env = TwoRooms(TwoRoomsConfig(img_size=16), eval_layouts=True)
    protocol = make_protocol("offline_goal", 10, "noisy")
    results = {}
    for name, model in (("true", SimModel(env.sim)), ("blind", Blind(env.sim))):
        torch.manual_seed(0)
        planner = make_planner("cem", 2, 10, seed=0, samples=32, iterations=2, elites=4)
        results[name] = goal_ranking(model, GoalCost("euclid", "last"), env, protocol, seed=100, episodes=4,
                                     repeat=5, samples=16, budget=20, planner=planner)
    assert results["true"]["plan_below_true"] == 0.0 and results["blind"]["plan_below_true"] >= 0.75
    assert results["blind"]["plan_final_distance"] > results["true"]["plan_final_distance"] >= 0.0


def test_true_frames_rank_by_what_the_env_shows_after_each_sequence():
    """`--imagine env`: each sequence is replayed in the env from the episode's start and its frames encoded; with
    the pixels themselves as the encoding, the exact actions end on the goal image (rank 0), and the frames are
    taken every frameskip env steps."""
    from benchmarks.goal_ranking import TrueFrames, goal_ranking
    from jepa_control.cost import GoalCost
    from jepa_control.protocols import make_protocol
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

    class Pixels:  # "encodes" frames as their pixels: [1, T, 1, H * W * C]
        frameskip = 1

        def __init__(self):
            self.wm = self

        def encode(self, frames, proprio=None):
            return frames.float().flatten(-3)[..., None, :]

        def observe(self, obs, info):
            return self.encode(torch.as_tensor(obs)[None, None])[0, 0]

        goal = observe

    env = TwoRooms(TwoRoomsConfig(img_size=16), eval_layouts=True)
    protocol = make_protocol("offline_goal", 10, "noisy")
    true = goal_ranking(TrueFrames(Pixels(), env, protocol), GoalCost("mse", "last"), env, protocol, seed=100,
                        episodes=3, repeat=5, samples=16, budget=20)
    assert true["true_rank"] == 0.0 and true["replay_success"] == 1.0

    model = Pixels()
    model.frameskip = 5
    frames = TrueFrames(model, env, protocol)
    frames.seed = 7
    actions = torch.rand(2, 10, 2) * 2 - 1
    states = frames.rollout(None, None, actions)
    protocol.start(env, 7)
    shown = [env.step(a)[0] for a in actions[1].numpy()]
    assert states.shape[:2] == (2, 2) and torch.equal(states[1, 1, 0], torch.as_tensor(shown[9]).float().flatten())


def test_the_replay_ends_on_the_budgets_last_step_so_an_agent_in_motion_is_judged_where_the_actions_leave_it():
    """A 1-D point that keeps its velocity under zero actions: one push of 1 puts it on the goal (position 1) and
    moving. Played last, after holding still, the push ends on the goal; played first, the point drifts past."""
    import numpy as np

    from benchmarks.goal_ranking import replay

    class Drift:
        def reset(self):
            self.pos = self.vel = 0.0

        def step(self, action):
            self.vel += float(action[0])
            self.pos += self.vel
            return None, 0.0, False, False, {"success": self.pos == 1.0, "distance": abs(self.pos - 1.0)}

    class Start:
        def start(self, env, seed):
            env.reset()

    info = replay(Drift(), Start(), 0, np.ones((1, 1), np.float32), budget=3)
    assert info["success"] and info["distance"] == 0.0
