"""The gate's rows: drawn from every episode, not the first ones."""
import torch

from jepa_control.gate import frame_rows


def test_frame_rows_draw_from_every_episode_and_keep_tokens_with_their_positions():
    episodes, steps = 20, 50
    # each frame's single token holds its own (episode, step), its position the same pair: rows must stay paired
    ids = torch.stack(torch.meshgrid(torch.arange(episodes), torch.arange(steps), indexing="ij"), -1).float()
    tokens, positions = ids[:, :, None, :], ids
    x, y = frame_rows(tokens, positions, 200, torch.Generator().manual_seed(0))
    assert x.shape == (200, 2) and x.dtype == torch.float32
    assert torch.equal(x, y)
    assert len(set(y[:, 0].tolist())) > episodes // 2  # the first 200 rows would be 4 episodes
    assert len({tuple(r) for r in y.tolist()}) == 200  # no frame twice
    x2, _ = frame_rows(tokens, positions, 200, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # seeded
