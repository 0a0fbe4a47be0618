"""The option rules of thinslice.checks: the same edge cases wherever they apply."""

import numpy as np
import pytest

from thinslice.checks import not_negative, positive, whole
from thinslice.errors import ConfigError


@pytest.mark.parametrize("value", [True, 2.0, "2", None, -1, 9])
def test_whole_refuses_what_is_not_a_count_in_range(value):
    with pytest.raises(ConfigError, match=r"^scale must be an integer from 2 to 8, got "):
        whole(value, "scale", 2, 8)


def test_whole_takes_python_and_numpy_integers():
    assert whole(np.int64(3), "scale", 2, 8) == 3 and type(whole(np.int64(3), "scale", 2, 8)) is int
    assert whole(0, "steps") == 0


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), float("inf"), True, "1"])
def test_positive_refuses_zero_negative_and_non_finite(value):
    with pytest.raises(ConfigError, match=r"^--slice-thickness must be a positive number of mm, got "):
        positive(value, "--slice-thickness", "mm")


def test_not_negative_allows_zero_and_names_its_meaning():
    assert not_negative(0, "--softness") == 0.0 and positive(np.float32(2.5), "x") == 2.5
    with pytest.raises(ConfigError, match=r"--softness must be a number >= 0 \(the FWHM\), got -0.1"):
        not_negative(-0.1, "--softness", "the FWHM")
