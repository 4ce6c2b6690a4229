"""Control on frozen JEPA encoders: the two-rooms env, trajectory collection, the action-conditioned world model,
goal costs, planners (CEM, MPPI, gradient, CEM + gradient), receding-horizon MPC with working memory, and the
success-rate evaluation (docs/control.md)."""
from jepa_control.encoding import FrozenEncoder
from jepa_control.latent_data import LatentTrajectoryDataModule
from jepa_control.world_model import WorldModel

__all__ = ["FrozenEncoder", "LatentTrajectoryDataModule", "WorldModel"]
