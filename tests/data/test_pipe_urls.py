"""pipe: shard URLs run a shell command from a config: refused without JEPA_ALLOW_PIPE=1, announced with it."""
from __future__ import annotations

import pytest

from jepa.errors import ConfigError
from tests.helpers.shard_helpers import ids_of_epoch, image_data, make_shards


def test_a_pipe_url_is_refused_without_the_opt_in(tmp_path, monkeypatch):
    make_shards(tmp_path, n=20, per_shard=10)
    monkeypatch.delenv("JEPA_ALLOW_PIPE", raising=False)
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError, match="runs a shell command: set JEPA_ALLOW_PIPE=1"):
        image_data([f"pipe:touch {marker}; cat {tmp_path}/shard-000000.tar"], epoch_samples=10, num_workers=0)
    assert not marker.exists()  # refused before anything ran


def test_with_the_opt_in_the_command_is_announced_and_read(tmp_path, monkeypatch):
    make_shards(tmp_path, n=20, per_shard=10)
    monkeypatch.setenv("JEPA_ALLOW_PIPE", "1")
    with pytest.warns(UserWarning, match="running the shell command 'cat "):
        dm = image_data([f"pipe:cat {tmp_path}/shard-000000.tar"], epoch_samples=8, num_workers=0, batch_size=4)
    ids = ids_of_epoch(dm)
    assert len(ids) == 8 and len(set(ids)) == 8 and set(ids) <= set(range(10))  # the first shard's samples, once
