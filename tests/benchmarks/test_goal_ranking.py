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
