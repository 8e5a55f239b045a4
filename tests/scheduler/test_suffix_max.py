"""SuffixMax: the largest value pushed at or after an index."""

from servesim.scheduler.suffix_max import SuffixMax


def test_max_from_each_index_matches_brute_force():
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    log = SuffixMax()
    for i, v in enumerate(values):
        log.push(i * 2, v)  # indices 0, 2, 4, ...
    for q in range(0, 17):
        expected = max((v for i, v in enumerate(values) if i * 2 >= q), default=None)
        assert log.max_from(q) == expected
    # Only the non-dominated tail is kept: 9 (index 10) then 6 (index 14).
    assert len(log) == 2


def test_forget_before_drops_only_older_entries():
    log = SuffixMax()
    for i, v in enumerate([5.0, 4.0, 3.0, 2.0]):
        log.push(i, v)
    log.forget_before(2)
    assert log.max_from(0) == 3.0 and log.max_from(3) == 2.0 and len(log) == 2
