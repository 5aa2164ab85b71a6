"""`segint.vocab.Vocab`: membership of one id agrees with `lookup`."""

import numpy as np

from segint.vocab import UNKNOWN, Vocab


def test_membership_is_lookup_not_unknown() -> None:
    rng = np.random.default_rng(0)
    vocab = Vocab(rng.choice(10_000, 3_000, replace=False))
    probe = [*rng.integers(-5, 10_010, 2_000).tolist(), 0, 9_999, 2**53 - 1, -(2**63)]
    for raw in probe:
        assert (raw in vocab) == (int(vocab.lookup([raw])[0]) != UNKNOWN), raw
    assert np.int64(vocab.ids[0]) in vocab


def test_membership_of_what_is_no_int64_id() -> None:
    vocab = Vocab([0, 1, 2**62])
    assert 2**62 in vocab
    assert 2**63 not in vocab and 2**64 + 1 not in vocab and -(2**63) - 1 not in vocab
    assert True not in vocab and 1.0 not in vocab and "1" not in vocab and None not in vocab
    assert 0 not in Vocab([])
