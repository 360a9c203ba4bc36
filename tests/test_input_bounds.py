"""Every numeric input is bounded where it is read (issue 13, broken promise 8).

Each of these used to end in a traceback (an overflow in torch or numpy, an
optimiser's ValueError, a file name too long for the filesystem); each must be
one line on stderr, exit code 2, and nothing written.
"""
from __future__ import annotations

import pytest

from ganzoo.cli import main

HUGE = "99999999999999999999999"
TRAIN = ["train", "vanilla", "--steps", "1", "--quiet", "--device", "cpu", "--dataset", "8gaussians"]

CASES = [
    ([*TRAIN, "--seed", HUGE], "expected a seed, an integer >= 0 of at most 9,223,372,036,854,775,807"),
    ([*TRAIN, "--seed", "-1"], "expected a seed, an integer >= 0, got '-1'"),
    ([*TRAIN, "--batch-size", HUGE], "expected a positive integer of at most 1,048,576"),
    ([*TRAIN, "--eval-n", HUGE], "expected a positive integer of at most 10,000,000"),
    ([*TRAIN, "--steps", HUGE], "expected a positive integer of at most 1,000,000,000"),
    ([*TRAIN, "--image-size", "100000"], "expected a positive integer of at most 4,096"),
    ([*TRAIN, "--set", "betas=2,3"], "cannot build its networks and optimisers with these settings: Invalid beta"),
    ([*TRAIN, "--set", "toy_hidden=-5"], "toy_hidden must be positive"),
    ([*TRAIN, "--set", "batch_size=1e30"], "batch_size=1e+30 is out of range"),
    ([*TRAIN, "--set", "toy_hidden=1e12"], "is out of range (at most 1e+09"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a[-2:]) for a, _ in CASES])
def test_out_of_range_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and message in err, err
    assert not out.exists()


def test_an_out_name_too_long_for_the_filesystem(tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write to --out" in err and "too long" in err.lower(), err


@pytest.mark.parametrize("argv, message", [
    (["sample", "RUN", "--n", HUGE], "expected a positive integer of at most 10,000,000"),
    (["sample", "RUN", "--seed", HUGE], "expected a seed, an integer >= 0"),
    (["eval", "RUN", "--n", HUGE], "expected a positive integer of at most 10,000,000"),
    (["eval", "RUN", "--seed", HUGE], "expected a seed, an integer >= 0"),
    (["check", "vanilla", "--seed", HUGE], "expected a seed, an integer >= 0"),
])
def test_sampling_and_checking_bound_their_numbers_too(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
