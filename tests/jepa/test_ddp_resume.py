"""Kill-and-resume under 2 gloo processes: one rank SIGKILLed mid-run, the job torn down, `--ckpt_path auto` on 2
processes, and the final weights bitwise equal to an uninterrupted 2-process run (tests/helpers/ddp_kill_resume.py
runs more of them)."""
from __future__ import annotations

from tests.helpers.ddp_kill_resume import finish, kill_one_rank, start
from tests.helpers.fault_injection import same, weights


def test_sigkill_of_rank_0_then_auto_resume_equals_the_uninterrupted_run(tmp_path, fmnist_root):
    rc, log = finish(start(tmp_path / "straight"))
    assert rc == 0, log[-3000:]
    assert kill_one_rank(tmp_path / "killed", step=7, rank=0) == 1
    assert not (tmp_path / "killed" / "checkpoints" / "step000000020.ckpt").exists()  # it really stopped early
    rc, log = finish(start(tmp_path / "killed", "--ckpt_path=auto"))
    assert rc == 0 and "resuming from" in log and "step000000006.ckpt" in log, log[-3000:]
    assert same(weights(tmp_path / "straight"), weights(tmp_path / "killed"))
