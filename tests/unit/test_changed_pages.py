"""How the search for rows behind the window groups the pages written since the last load."""

from loader.extract.changed_pages import MAX_RANGES, MERGE_GAP, page_ranges


def test_runs_close_together_are_read_as_one_range_and_far_ones_apart():
    near = [(0, 3), (3 + MERGE_GAP + 1, 40)]  # a gap of MERGE_GAP pages: read through it
    far = [(1000, 1001), (1001 + MERGE_GAP + 2, 2000)]  # one page more: two ranges
    assert page_ranges(near + far) == [(0, 40), (1000, 1001), (1001 + MERGE_GAP + 2, 2000)]


def test_many_scattered_pages_become_at_most_max_ranges_covering_every_page():
    runs = [(p, p) for p in range(0, 100_000, 997)]  # 101 pages far apart
    ranges = page_ranges(runs)
    assert len(ranges) == MAX_RANGES
    assert all(any(lo <= p <= hi for lo, hi in ranges) for p, _ in runs)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))
