"""Hangs in a function named wait_forever while MARKER is absent or `always` is given; exits 0 otherwise. Creates
MARKER before hanging. Usage: hang_once.py MARKER [always]. Checks that run_two_ranks dumps a hung script's stacks
and retries it once."""
import sys
import time
from pathlib import Path


def wait_forever() -> None:
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    marker = Path(sys.argv[1])
    if not marker.exists() or sys.argv[2:] == ["always"]:
        marker.touch()
        wait_forever()
    print("second attempt")
