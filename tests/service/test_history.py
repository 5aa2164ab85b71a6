"""History bookkeeping and the cached blob format."""

from __future__ import annotations

import numpy as np
import pytest

from service.history import NO_TIME, BlobError, History, UserState, decode_blob, encode_blob

FP = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def history(*views: tuple[int, int]) -> History:
    """Views as (video_id, time_ms), 12 s videos watched 7 s (exit slot 1 of 3 segments)."""
    vids = [v for v, _ in views]
    return History.from_views(
        vids, [12000] * len(vids), [7000] * len(vids), [t for _, t in views], cap=5
    )


def test_from_views_sorts_newest_first_dedupes_and_caps() -> None:
    """Timed views are re-sorted newest first, repeats kept once, untimed ones last, cap kept."""
    h = History.from_views(
        video_ids=[1, 2, 3, 2, 4, 5, 6, 7],
        duration_ms=[12000] * 8,
        play_time_ms=[7000, 12000, 1, 12000, 5000, 5001, 9000, 3000],
        time_ms=[10, 30, NO_TIME, 30, 20, NO_TIME, 5, 1],
        cap=5,
    )
    assert h.video_ids.tolist() == [2, 4, 1, 6, 7]
    assert h.time_ms.tolist() == [30, 20, 10, 5, 1]
    assert h.exit_slots.tolist() == [3, 0, 1, 1, 0]  # 12 s = 3 segments; 12000 ms = complete
    assert h.n_segments.tolist() == [3, 3, 3, 3, 3]


def test_with_view_inserts_by_time_and_is_idempotent() -> None:
    """A view lands at its time's place; the same (video, time) again changes nothing."""
    h = history((1, 30), (2, 10))
    h2 = h.with_view(3, 12000, 7000, 20, cap=5)
    assert h2 is not None and h2.video_ids.tolist() == [1, 3, 2]
    assert h2.with_view(3, 12000, 7000, 20, cap=5) is None
    # Same video at another time is another view.
    h3 = h2.with_view(3, 12000, 7000, 40, cap=5)
    assert h3 is not None and h3.video_ids.tolist() == [3, 1, 3, 2]


def test_with_view_keeps_the_cap_and_drops_views_older_than_a_full_history() -> None:
    """At the cap the oldest view falls off; a view older than all of a full history is a no-op."""
    h = history((1, 50), (2, 40), (3, 30), (4, 20), (5, 10))
    newer = h.with_view(6, 12000, 1000, 60, cap=5)
    assert newer is not None and newer.video_ids.tolist() == [6, 1, 2, 3, 4]
    assert h.with_view(7, 12000, 1000, 5, cap=5) is None


def test_blob_round_trip() -> None:
    """encode/decode returns the same states, mask and history, bit for bit."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(1, 2, 4, 12)).astype(np.float32)
    mask = np.array([True, True, True, False])
    state = UserState(history((1, 30), (2, 10), (3, NO_TIME)), states, mask)
    got = decode_blob(encode_blob(state, FP), FP)
    assert got.states is not None and got.mask is not None
    np.testing.assert_array_equal(got.states, states)
    np.testing.assert_array_equal(got.mask, mask)
    for name in ("video_ids", "time_ms", "exit_slots", "n_segments"):
        np.testing.assert_array_equal(getattr(got.history, name), getattr(state.history, name))


def test_blob_without_states_round_trips() -> None:
    """The cross stream caches only the history."""
    got = decode_blob(encode_blob(UserState(history((9, 1)), None, None), FP), FP)
    assert got.states is None and got.history.video_ids.tolist() == [9]


def test_stale_and_corrupt_blobs_are_refused() -> None:
    """Another export's blob is "stale"; a flipped or missing byte is "corrupt"."""
    blob = encode_blob(
        UserState(history((1, 30)), np.ones((1, 1, 2, 3), np.float32), np.ones(2, bool)), FP
    )
    with pytest.raises(BlobError) as e:
        decode_blob(blob, b"\x00" * 8)
    assert e.value.reason == "stale"
    assert decode_blob(blob, None).history.video_ids.tolist() == [1]
    flipped = bytearray(blob)
    flipped[-3] ^= 0xFF
    for bad in (bytes(flipped), blob[:-1], blob[:10], b"nonsense" * 8):
        with pytest.raises(BlobError) as e:
            decode_blob(bad, FP)
        assert e.value.reason == "corrupt"
