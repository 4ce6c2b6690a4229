"""Does a world model learn the dynamics, and could it? Three read-outs on held-out trajectories (`jepa collect`
shards) for a world-model checkpoint (frozen-encoder or pixel):

- `position_r2`: ridge R^2 of the agent's recorded (x, y) read from a frame's latents (does the encoder keep it?);
- `action_r2`: ridge R^2 of the next change of the agent's recorded state (its proprio: Push-T's pusher position)
  read from the action and that state, no model involved (do the data's actions drive what the frames show, and are
  they aligned with them?);
- `state_r2` (where the trajectories recorded the env's state, Push-T's pusher and block pose): the ridge R^2 of each
  state value read from a state's latents (can a linear read-out find the block, and its angle?), and
  `state_readout_r2`, the world model's own learned read-out's (model.state_dim), on the same frames; with
  `--mlp_steps N`, also a two-layer MLP's, from the latents (`state_mlp_r2`) and from the raw frames averaged to
  32 x 32 (`state_pixels_mlp_r2`): whether the frames show what the latents miss;
- `one_step_mse` against `no_change_mse`: the predictor's next-latent error from `context` true frames at every step
  of every episode, beside predicting that nothing moves (does it learn more than that?). A model trained at
  frameskip f steps f env steps at a time: its frames are f apart, its actions the f env actions between them.

    python benchmarks/world_model_check.py runs/push_t/pixel_world_model/checkpoints/last.ckpt \
        --train runs/push_t/data/train --val runs/push_t/data/val
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from jepa_control.collect import positions, read_trajectories  # noqa: E402
from jepa_control.gate import frame_rows, held_out_r2, r2_per_column, ridge_fit, ridge_r2, ridge_select  # noqa: E402
from jepa_control.windows import model_steps  # noqa: E402


def action_r2(train: dict, val: dict) -> float:
    """The agent's state change between frames t and t+1 read linearly from action t and the state at t."""
    def rows(d: dict):
        p, a = d["proprio"].double(), d["actions"].double()
        return torch.cat([a, p[:, :-1]], -1).flatten(0, 1), (p[:, 1:] - p[:, :-1]).flatten(0, 1)

    return ridge_r2(*rows(train), *rows(val))["r2"]


def per_value_r2(pred: torch.Tensor, y: torch.Tensor) -> list[float]:
    return [round(float(v), 3) for v in r2_per_column(pred, y)]


@torch.no_grad()
def state_r2(world_model, train: dict, val: dict, train_latents: torch.Tensor, val_latents: torch.Tensor,
             episodes: int) -> dict:
    """Per state value: the R^2 of a ridge read-out fitted on training frames' latents, and of the model's own."""
    rows = episodes * train["frames"].shape[1]
    fitting = frame_rows(train_latents, train["state"][:episodes], rows, torch.Generator().manual_seed(0))
    weight, bias = ridge_fit(*fitting, ridge_select(*fitting)[0])
    x, y = val_latents.flatten(2).flatten(0, 1).double(), val["state"][:episodes].flatten(0, 1)
    out = {"state_r2": per_value_r2(x @ weight + bias, y)}
    if world_model.reads_state:
        out["state_readout_r2"] = per_value_r2(world_model.read_state(val_latents).flatten(0, 1), y)
    return out


def mlp_r2(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
           steps: int) -> list[float]:
    """Per value R^2 on the validation rows of a two-layer MLP (512 wide, AdamW, batch 256) fitted for `steps` on
    the training rows, inputs and targets standardised on the training rows (a read-out that need not be linear)."""
    torch.manual_seed(0)
    x_mean, x_std = train_x.mean(0), train_x.std(0) + 1e-6
    y_mean, y_std = train_y.mean(0), train_y.std(0) + 1e-6
    x, y = (train_x - x_mean) / x_std, (train_y - y_mean) / y_std
    net = nn.Sequential(nn.Linear(x.shape[1], 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(),
                        nn.Linear(512, y.shape[1]))
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    for _ in range(steps):
        rows = torch.randint(len(x), (256,))
        loss = F.mse_loss(net(x[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return per_value_r2(net((val_x - x_mean) / x_std) * y_std + y_mean, val_y)


def small_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames [E, T, H, W, C] -> [E * T, 32 * 32 * C] in [0, 1], averaged down to 32 x 32."""
    x = frames.flatten(0, 1).permute(0, 3, 1, 2).float().div(255)
    return F.adaptive_avg_pool2d(x, 32).flatten(1)


def state_mlp_r2(train: dict, val: dict, train_latents: torch.Tensor, val_latents: torch.Tensor, episodes: int,
                 steps: int) -> dict:
    """state_r2's question for a two-layer MLP, from the latents and from the raw frames."""
    train_y, val_y = train["state"][:episodes].flatten(0, 1).float(), val["state"][:episodes].flatten(0, 1).float()
    return {"state_mlp_r2": mlp_r2(train_latents.flatten(2).flatten(0, 1), train_y,
                                   val_latents.flatten(2).flatten(0, 1), val_y, steps),
            "state_pixels_mlp_r2": mlp_r2(small_frames(train["frames"][:episodes]), train_y,
                                          small_frames(val["frames"][:episodes]), val_y, steps)}


@torch.no_grad()
def one_step_errors(world_model, latents: torch.Tensor, actions: torch.Tensor) -> tuple[float, float]:
    """latents [E, T+1, N, D], actions [E, T, A] -> mean squared error of the predicted next latents from `context`
    true frames (every step that has them), and of predicting the last frame again."""
    k = world_model.hparams.context
    model, no_change = [], []
    for t in range(k - 1, latents.shape[1] - 1):
        pred = world_model.predictor(latents[:, t - k + 1 : t + 1], actions[:, t - k + 1 : t + 1], last_only=True)
        model.append((pred[:, -1] - latents[:, t + 1]).pow(2).mean())
        no_change.append((latents[:, t] - latents[:, t + 1]).pow(2).mean())
    return float(torch.stack(model).mean()), float(torch.stack(no_change).mean())


def check(world_model, train: dict, val: dict, episodes: int, mlp_steps: int = 0) -> dict:
    with torch.no_grad():
        latents = world_model.encode(val["frames"][:episodes], val["proprio"][:episodes].float())
    out = {"action_r2": round(action_r2(train, val), 3)}
    # the position gate's read-out of the agent's (x, y), on every frame's own tokens (a proprioception token would
    # hand it the answer)
    with torch.no_grad():
        train_latents = world_model.encode(train["frames"][:episodes], train["proprio"][:episodes].float())
    rows = train_latents.shape[0] * train_latents.shape[1], latents.shape[0] * latents.shape[1]
    n = world_model.frozen_encoder.num_tokens  # the frame's own tokens come first
    fit = held_out_r2(train_latents[:, :, :n], positions(train["proprio"][:episodes]), latents[:, :, :n],
                      positions(val["proprio"][:episodes]), *rows, torch.Generator().manual_seed(0))
    out["position_r2"] = round(fit["r2"], 3)
    if train.get("state") is not None and val.get("state") is not None:
        out.update(state_r2(world_model, train, val, train_latents, latents, episodes))
        if mlp_steps:
            out.update(state_mlp_r2(train, val, train_latents, latents, episodes, mlp_steps))
    f = world_model.frameskip
    latents, actions = model_steps(latents, val["actions"][:episodes].float(), f)
    model, no_change = one_step_errors(world_model, latents, actions)
    out.update(frameskip=f, one_step_mse=model, no_change_mse=no_change,
               one_step_vs_no_change=round(model / no_change, 3))
    return out


def main() -> None:
    from jepa_control.world_model import WorldModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="world-model checkpoint (`jepa fit` of a WorldModel or PixelWorldModel)")
    p.add_argument("--train", required=True, help="training trajectories (the read-outs' fitting set)")
    p.add_argument("--val", required=True, help="held-out trajectories (where every figure is measured)")
    p.add_argument("--episodes", type=int, default=200, help="episodes of each set to encode")
    p.add_argument("--mlp_steps", type=int, default=0,
                   help="steps of the MLP read-outs of the recorded state (0: ridge only; 3000 takes ~2 min)")
    args = p.parse_args()
    world_model = WorldModel.from_checkpoint(args.ckpt).eval()
    result = check(world_model, read_trajectories(args.train), read_trajectories(args.val), args.episodes,
                   args.mlp_steps)
    print(json.dumps({"ckpt": args.ckpt, **result}))


if __name__ == "__main__":
    main()
