"""How the embedding worker cuts distinct texts into model batches."""

from __future__ import annotations

from trendflow.workers.embed import model_batches


def test_batches_are_shortest_first_and_at_most_size() -> None:
    texts = {f"h{i}": "x" * (100 - i) for i in range(10)}
    batches = model_batches(texts, 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    flat = [key for batch in batches for key in batch]
    assert flat == sorted(texts, key=lambda k: len(texts[k]))


def test_long_texts_make_smaller_batches() -> None:
    texts = {"short": "a", **{f"long{i}": "y" * 1000 for i in range(6)}}
    batches = model_batches(texts, 4, chars_per_text=300)  # at most 1,200 characters a batch
    assert batches[0] == ["short", "long0"]
    assert all(len(b) == 1 for b in batches[1:])
    assert sorted(k for b in batches for k in b) == sorted(texts)


def test_nothing_to_encode_is_no_batch() -> None:
    assert model_batches({}, 64) == []
