"""Message ids as shared integer keys (loadtest.analysis.msg_keys): the same answers as the
text path (pd.factorize, Index.get_indexer), and the same key for a message in every frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.analysis import msg_keys

ATTEMPTS = pd.DataFrame({"msg_id": ["r-2", "r-10", "r-2", "r-1"], "end": [1.0, 2.0, 3.0, 4.0]})
RECEIPTS = pd.DataFrame({"msg_id": ["r-10", None, "r-7", "r-2"], "time": [5.0, 6.0, 7.0, 8.0]})


def test_a_message_has_one_key_in_both_frames_and_keeps_its_text() -> None:
    attempts, receipts = msg_keys.share(ATTEMPTS, RECEIPTS)
    a, r = attempts["msg_id"], receipts["msg_id"]
    assert a.dtype == r.dtype
    assert list(a.cat.categories) == ["r-2", "r-10", "r-1", "r-7"]  # first seen first
    assert a.cat.codes.tolist() == [0, 1, 0, 2]
    assert r.cat.codes.tolist() == [1, -1, 3, 0]  # a missing id stays missing
    assert a.astype(str).tolist() == ATTEMPTS["msg_id"].tolist()  # users still see text
    assert attempts["end"].tolist() == ATTEMPTS["end"].tolist()


def test_factorize_answers_as_pandas_does_on_the_text() -> None:
    attempts, receipts = msg_keys.share(ATTEMPTS, RECEIPTS)
    both = pd.concat([attempts["msg_id"], receipts["msg_id"]], ignore_index=True)
    text = pd.concat([ATTEMPTS["msg_id"], RECEIPTS["msg_id"]], ignore_index=True)
    for keyed, plain in ((both, text), (both.iloc[::-1], text.iloc[::-1])):  # any order
        codes, ids = msg_keys.factorize(keyed)
        want_codes, want_ids = pd.factorize(plain)
        assert codes.tolist() == want_codes.tolist()
        assert list(ids) == list(want_ids)


def test_positions_answer_as_get_indexer_does_on_the_text() -> None:
    attempts, receipts = msg_keys.share(ATTEMPTS, RECEIPTS)
    _, ids = msg_keys.factorize(receipts["msg_id"])  # only some of the categories
    for index in (ids, pd.Index(["r-1", "r-10"]), pd.Index(attempts["msg_id"].cat.categories)):
        for keyed, plain in ((attempts, ATTEMPTS), (receipts, RECEIPTS)):
            got = msg_keys.positions(index, keyed["msg_id"])
            assert np.array_equal(got, index.get_indexer(plain["msg_id"])), (index, plain)
