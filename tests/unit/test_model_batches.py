"""How the embedding worker cuts distinct texts into model batches, by their token counts."""

from __future__ import annotations

from trendflow.workers.embed import model_batches


def test_batches_are_fewest_tokens_first_and_at_most_size() -> None:
    tokens = {f"h{i}": 40 - i for i in range(10)}
    batches = model_batches(tokens, 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    flat = [key for batch in batches for key in batch]
    assert flat == sorted(tokens, key=tokens.__getitem__)


def test_texts_of_one_token_length_share_a_batch() -> None:
    # Interleaved short and long texts: sorted, each batch pads only to its own kind.
    tokens = {f"t{i}": 10 if i % 2 else 60 for i in range(8)}
    batches = model_batches(tokens, 4)
    assert [sorted(tokens[k] for k in batch) for batch in batches] == [[10] * 4, [60] * 4]


def test_long_texts_make_smaller_batches() -> None:
    tokens = {"short": 3, **{f"long{i}": 256 for i in range(6)}}
    batches = model_batches(tokens, 4, tokens_per_text=128)  # at most 512 padded tokens a batch
    assert batches[0] == ["short", "long0"]
    assert all(len(b) == 2 for b in batches[1:-1])
    assert sorted(k for b in batches for k in b) == sorted(tokens)


def test_nothing_to_encode_is_no_batch() -> None:
    assert model_batches({}, 64) == []
