"""Classical methods: shapes, exact acquired slices, polynomial reproduction, registry."""

from __future__ import annotations

import numpy as np
import pytest

from thinslice.errors import ConfigError
from thinslice.methods import available, get_method


@pytest.mark.parametrize("name", ["linear", "cubic", "lanczos"])
@pytest.mark.parametrize("r", [2, 3, 4])
def test_shape_and_acquired_slices(small_ct, name, r):
    data = small_ct.astype(np.float32)
    out = get_method(name)(data, r)
    assert out.shape == (r * (data.shape[0] - 1) + 1, *data.shape[1:])
    np.testing.assert_array_equal(out[::r], data)


@pytest.mark.parametrize(("name", "degree"), [("linear", 1), ("cubic", 3)])
def test_reproduces_polynomials_exactly(name, degree):
    z = np.arange(9, dtype=np.float64)
    values = (0.5 * z**degree + 2 * z + 1).astype(np.float32)
    data = np.broadcast_to(values[:, None, None], (9, 3, 3)).copy()
    out = get_method(name)(data, 4)
    zf = np.arange(33) / 4
    np.testing.assert_allclose(out[:, 1, 1], 0.5 * zf**degree + 2 * zf + 1, rtol=1e-4)


def test_lanczos_is_exact_on_linear_ramps_away_from_edges():
    data = np.broadcast_to(np.arange(12, dtype=np.float32)[:, None, None], (12, 2, 2)).copy()
    out = get_method("lanczos")(data, 2)
    np.testing.assert_allclose(out[6:-6, 0, 0], np.arange(6, 17) / 2, atol=1e-3)


def test_methods_beat_nearest_on_real_ct(chest_ct):
    truth = chest_ct.data.astype(np.float32)
    thick = truth[::2]
    nearest_err = np.abs(np.repeat(thick, 2, axis=0)[: truth.shape[0]] - truth)[1::2].mean()
    for name in ("linear", "cubic", "lanczos"):
        err = np.abs(get_method(name)(thick, 2) - truth)[1::2].mean()
        assert err < 0.9 * nearest_err, name


def test_registry_lists_methods_and_suggests_names():
    assert {"linear", "cubic", "lanczos", "model"} <= set(available())
    with pytest.raises(ConfigError, match="Did you mean 'cubic'"):
        get_method("cubik")
