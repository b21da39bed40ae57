"""What ``lenet-tf benchmark`` refuses, and when: bad counts at parse time, a bad data folder or --json target before
any contender starts, a run where every contender failed with a non-zero exit."""

import pytest


@pytest.mark.parametrize("flag, value, expected", [
    ("--steps", "0", "must be ≥ 1, got 0"), ("--steps", "-3", "must be ≥ 1, got -3"),
    ("--steps", "1.5", "must be a whole number ≥ 1, got 1.5"), ("--repeats", "0", "must be ≥ 1, got 0"),
    ("--warmup", "-5", "must be ≥ 0, got -5")])
def test_counts_out_of_range_are_a_usage_error_before_anything_runs(cli, flag, value, expected):
    done = cli("benchmark", flag, value, "--only", "lenet_tf")
    assert done.returncode == 2 and done.stdout == ""
    assert f"lenet-tf benchmark: error: argument {flag}: {expected}" in done.stderr
    assert "Traceback" not in done.stderr
