"""The per-slot position read-out: a slot's centre is its frames' mean garment centre, and each slot's R^2 reads
that slot's features only."""
import torch


def test_a_slot_centre_is_the_mean_centre_of_its_frames():
    from benchmarks.slot_position import slot_centres

    corners = torch.tensor([[[0.0, 10.0], [2.0, 10.0], [4.0, 12.0], [6.0, 12.0], [99.0, 99.0]]])  # 4 frames + 1 future
    centres = slot_centres(corners, num_frames=4, slots=2, garment=8)
    assert torch.allclose(centres, torch.tensor([[[5.0, 14.0], [9.0, 16.0]]], dtype=torch.float64))
    assert torch.allclose(slot_centres(corners, 4, 4, 8)[0, :, 0], torch.tensor([4.0, 6.0, 8.0, 10.0]).double())


def test_each_slot_is_read_from_its_own_features():
    from benchmarks.slot_position import per_slot_r2

    g = torch.Generator().manual_seed(0)
    centres = torch.rand(600, 2, 2, generator=g) * 40
    noise = torch.randn(600, 2, 6, generator=g)
    features = noise.clone()
    features[:, 0, :2] += centres[:, 0]  # slot 0 shows where the garment is; slot 1 shows slot 0's place only
    features[:, 1, :2] += centres[:, 0]
    r2 = per_slot_r2(features[:400], centres[:400], features[400:], centres[400:])
    assert r2[0] > 0.95 and r2[1] < 0.1
