"""PeriodicCheckpoint: every N optimizer steps, keep the last K, atomic, and a checkpoint on preemption.

On SIGTERM (and SIGUSR1 outside SLURM, where Lightning's own requeue handler takes it) Lightning stops after the
current step; this callback then writes a checkpoint of that step before the process exits. `jepa fit
--ckpt_path auto` resumes from the newest intact checkpoint in the folder (a truncated or corrupt newest one is
passed over with a warning) or starts afresh when there is none.
"""
from __future__ import annotations

import signal
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from jepa.checkpoint_io import AtomicCheckpointIO
from jepa.errors import ConfigError


class PeriodicCheckpoint(ModelCheckpoint):
    """Checkpoints `step000001200.ckpt` every `every_n_steps` optimizer steps and at the end of training,
    keeping the newest `keep_last`, plus `last.ckpt` when save_last is true.

    Args:
        dirpath: folder (default: <default_root_dir>/checkpoints).
        every_n_steps: optimizer steps between checkpoints.
        keep_last: checkpoints kept (older ones are deleted).
        save_last: also keep a copy named last.ckpt.
    """

    def __init__(self, dirpath: str | None = None, every_n_steps: int = 500, keep_last: int = 3,
                 save_last: bool = True) -> None:
        if every_n_steps < 1 or keep_last < 1:
            raise ConfigError(f"PeriodicCheckpoint needs every_n_steps >= 1 and keep_last >= 1, got "
                              f"{every_n_steps} and {keep_last}")
        super().__init__(dirpath=dirpath, filename="step{step:09d}", auto_insert_metric_name=False,
                         monitor="step", mode="max", save_top_k=keep_last, every_n_train_steps=every_n_steps,
                         save_last=save_last, save_on_train_epoch_end=False,
                         enable_version_counter=False)  # a resumed run overwrites last.ckpt, never adds last-v1
        self.keep_last = keep_last
        self.resume_hint = "--ckpt_path auto"  # what the preemption line tells the user to add to resume
        self._announced = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.dirpath = str(periodic_dir(trainer))  # fixed before Lightning would derive it from a logger version
        self._announced = False  # per fit: a callback reused for another fit says so again
        super().setup(trainer, pl_module, stage)
        if not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        slurm = isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
        if not slurm and hasattr(signal, "SIGUSR1"):  # treat SIGUSR1 as a preemption notice, like SIGTERM
            signal.signal(signal.SIGUSR1, lambda *_: signal.raise_signal(signal.SIGTERM))

    def _save_now(self, trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self._last_global_step_saved == trainer.global_step:
            return
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # A preemption notice arrived during this step: save now, at a batch end, where Lightning's own resume
        # logic is exact (it raises right after this hook). Any rank's notice counts, so all ranks save together.
        preempted = trainer.received_sigterm
        if trainer.world_size > 1:
            preempted = trainer.strategy.reduce_boolean_decision(preempted, all=False)
        if preempted:
            self._save_now(trainer)
            self._announce(trainer)
        if self._last_global_step_saved == trainer.global_step:  # only after a save: no directory scan per step
            self._prune(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save_now(trainer)  # the final step, when it falls between two periodic checkpoints
        self._prune(trainer)

    def _prune(self, trainer) -> None:
        """Keep the newest keep_last step checkpoints on disk, including ones left by an interrupted run (a
        checkpoint's own record of the top-k predates that checkpoint, so Lightning would not delete it)."""
        if not trainer.is_global_zero or not self.dirpath:
            return
        steps = sorted(Path(self.dirpath).glob("step*.ckpt"))  # zero-padded step numbers sort in step order
        for old in steps[: max(0, len(steps) - self.keep_last)]:
            trainer.strategy.checkpoint_io.remove_checkpoint(old)
            self.best_k_models.pop(str(old), None)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # a notice that came after this step's on_train_batch_end: the state is one step later, still consistent;
        # one that came right after a periodic save finds the step saved, and still says so
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit" and not self._announced:
            if self._last_global_step_saved != trainer.global_step:
                self._save_now(trainer)
            self._announce(trainer)

    def _announce(self, trainer) -> None:
        self._announced = True
        if trainer.is_global_zero:
            print(f"preempted: saved step {trainer.global_step} in {self.dirpath}; run the same command with "
                  f"{self.resume_hint} to resume", flush=True)


def periodic_dir(trainer) -> Path | None:
    """The folder of the trainer's PeriodicCheckpoint, if it has one."""
    for cb in trainer.callbacks:
        if isinstance(cb, PeriodicCheckpoint):
            return Path(cb.dirpath) if cb.dirpath else Path(trainer.default_root_dir) / "checkpoints"

    return None


def set_resume_hint(trainer, hint: str) -> None:
    """Commands that resume by another flag than `--ckpt_path auto` (the quickstart's `--resume`) say so here."""
    for cb in trainer.callbacks:
        if isinstance(cb, PeriodicCheckpoint):
            cb.resume_hint = hint
