"""The within-clip share of slot-feature variance: 0 when a clip's slots are alike, 1 when only the slots differ, and
blind to a constant per slot."""
import torch


def test_the_share_separates_slots_from_clips_and_ignores_a_slot_constant():
    from benchmarks.slot_variance import within_clip_share

    g = torch.Generator().manual_seed(0)
    per_clip = torch.randn(64, 1, 8, generator=g).expand(64, 4, 8)  # every slot of a clip alike
    per_slot_offset = torch.randn(1, 4, 8, generator=g) * 10  # e.g. a time embedding: the same in every clip
    assert within_clip_share(per_clip + per_slot_offset) < 1e-6
    per_slot = torch.randn(64, 4, 8, generator=g)
    per_slot = (per_slot - per_slot.mean(1, keepdim=True)) * (4 / 3) ** 0.5  # slots differ, each clip's mean alike
    assert within_clip_share(per_slot) > 0.999
    mixed = within_clip_share(per_clip + per_slot)
    assert 0.4 < mixed < 0.6  # about equal parts of each
