"""unique_index returns exactly torch.unique's sorted values, inverse and counts (mask path and sort path)."""
import pytest
import torch

from elliot.recommender.base import unique_index


@pytest.mark.parametrize("size,n", [(50, 200), (50, 1), (10_000, 20)])  # mask, mask, sort fallback
def test_unique_index_matches_torch_unique(size, n):
    index = torch.randint(0, size, (n,), generator=torch.Generator().manual_seed(size + n))
    expected = torch.unique(index, sorted=True, return_inverse=True, return_counts=True)
    got = unique_index(index, size, return_counts=True)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and torch.equal(a, b)
    uniq, inverse = unique_index(index, size)
    assert torch.equal(uniq[inverse], index)
