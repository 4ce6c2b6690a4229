"""Single frames of collected trajectories as an image dataset, so `jepa fit` can pretrain an I-JEPA encoder on
what the agent sees (configs/control/two_rooms_encoder.yaml)."""
from __future__ import annotations

from torch.utils.data import DataLoader

from jepa_control.collect import positions, read_trajectories
from data.fashion_mnist import TensorImageDataset
from data.resumable import ResumableDataModule
from data.transforms import eval_transform, train_transform
from jepa.errors import ConfigError

# per-channel statistics of two-rooms frames (measured on collected episodes); the encoder sees frames normalised
# with them during pretraining, and jepa_control/encoding.py applies the same ones at planning time
TWO_ROOMS_MEAN, TWO_ROOMS_STD = (0.238, 0.230, 0.210), (0.171, 0.155, 0.135)


class TrajectoryFramesDataModule(ResumableDataModule):
    """Every frame of the episodes in `train_dir` (trajectory shards of `jepa collect`), held in memory as uint8.

    Args:
        train_dir: folder of trajectory shards for training.
        val_dir: optional folder of trajectory shards for validation.
        batch_size: frames per device and step.
        num_workers: dataloader worker processes.
        crop_scale: RandomResizedCrop area range ([1, 1]: no crop, the whole frame).
        flip: random horizontal flip.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        seed: epoch order and augmentation seed.
    """

    def __init__(self, train_dir: str, val_dir: str | None = None, batch_size: int = 128, num_workers: int = 1,
                 crop_scale: tuple[float, float] = (1.0, 1.0), flip: bool = False,
                 mean: tuple[float, ...] = TWO_ROOMS_MEAN, std: tuple[float, ...] = TWO_ROOMS_STD,
                 seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.train_dir, self.val_dir = train_dir, val_dir
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.crop_scale, self.flip, self.mean, self.std = crop_scale, flip, mean, std
        self.normalisation = {"mean": list(mean), "std": list(std)}  # saved with checkpoints, read by `jepa export`
        self.train_set = self.val_set = None

    @staticmethod
    def _frames(path: str) -> TensorImageDataset:
        data = read_trajectories(path)
        frames = data["frames"].flatten(0, 1).permute(0, 3, 1, 2).contiguous()  # [E*(T+1), 3, H, W]
        return TensorImageDataset(frames, positions(data["proprio"]).flatten(0, 1))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._frames(self.train_dir)
            self.val_set = self._frames(self.val_dir) if self.val_dir else None
        size = self.train_set.images.shape[-1]
        self.train_tf = train_transform(size, self.crop_scale, self.flip, self.mean, self.std)
        if self.val_set is not None:
            self.val_set.transform = eval_transform(self.mean, self.std)

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self.train_set, self.train_tf, self.batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val_set, self.batch_size, self.num_workers) if self.val_set else []
