"""The one padded-size rule (vtjax.buckets): the series, its waste bound, fixed lists."""

import pytest

from vtjax.buckets import bucket_size


def test_the_series_has_four_sizes_per_octave():
    assert [bucket_size(n) for n in (1, 16, 17, 20, 21, 31, 32, 33, 100, 1000)] == \
        [16, 16, 20, 20, 24, 32, 32, 40, 112, 1024]
    assert [bucket_size(n) for n in range(257, 513)] == [320] * 64 + [384] * 64 + [448] * 64 + [512] * 64
    for n in range(1, 5000, 7):
        b = bucket_size(n)
        assert n <= b <= max(16, 1.25 * n + 4)


def test_minimum_and_fixed_buckets():
    assert bucket_size(3, minimum=64) == 64 and bucket_size(65, minimum=64) == 80
    assert bucket_size(300, buckets=[1024, 256, 512]) == 512
    assert bucket_size(3, minimum=64, buckets=[8, 16]) == 8  # a fixed list ignores the series' minimum
    with pytest.raises(ValueError, match="largest bucket 1024"):
        bucket_size(2000, buckets=[256, 512, 1024])
