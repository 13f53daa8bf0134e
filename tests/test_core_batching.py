"""ktae.core.batching.length_buckets against a plain greedy reference."""
import pytest
import torch

from ktae.core.batching import length_buckets


def reference(lengths: list[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        current = buckets[-1] if buckets else None
        fits = current is not None and (not max_rows or len(current) < max_rows) and \
            (not max_tokens or (len(current) + 1) * lengths[i] <= max_tokens)
        if fits:
            current.append(i)
        else:
            buckets.append([i])
    return buckets


@pytest.mark.parametrize("max_rows, max_tokens", [(3, 0), (0, 25), (2, 25), (0, 4), (1, 0), (100, 1000)])
def test_buckets_equal_the_greedy_reference(max_rows, max_tokens):
    gen = torch.Generator().manual_seed(max_rows * 7 + max_tokens)
    lengths = torch.randint(1, 12, (40,), generator=gen)
    got = [b.tolist() for b in length_buckets(lengths, max_rows, max_tokens)]
    assert got == reference(lengths.tolist(), max_rows, max_tokens)


def test_no_limit_keeps_the_rows_in_their_order_and_empty_gives_nothing():
    assert [b.tolist() for b in length_buckets(torch.tensor([5, 1, 3]))] == [[0, 1, 2]]
    assert length_buckets(torch.tensor([], dtype=torch.long), 2, 10) == []


def test_a_row_longer_than_the_budget_stands_alone():
    assert [b.tolist() for b in length_buckets(torch.tensor([2, 50, 2, 3]), max_tokens=10)] == [[0, 2, 3], [1]]
