"""The 2-rank test runner turns a hang into a stack dump and one retry, and fails on a second hang."""
import pytest

from tests.helpers.two_ranks import run_two_ranks


def test_a_hung_script_is_dumped_and_retried_once(tmp_path):
    with pytest.warns(UserWarning, match="(?s)hung for 3 s.*wait_forever"):
        done = run_two_ranks("hang_once.py", str(tmp_path / "marker"), timeout=3)
    assert done.returncode == 0 and "second attempt" in done.stdout


def test_a_script_that_hangs_twice_fails_with_its_stacks(tmp_path):
    with pytest.warns(UserWarning), pytest.raises(AssertionError, match="(?s)hung twice.*wait_forever"):
        run_two_ranks("hang_once.py", str(tmp_path / "marker"), "always", timeout=3)
