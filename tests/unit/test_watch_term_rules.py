"""Watch-term validation: what an admin may save, and the message when it may not."""
from __future__ import annotations

import pytest

from alerting.watch_terms import MAX_TERMS, InvalidTerm, check_term, check_terms
from counting.terms import ScopeMatcher
from models.preprocess import preprocess


def test_a_term_is_saved_as_posts_are_matched():
    assert check_term("  Lost   LUGGAGE ") == "lost luggage"
    assert check_term("＃Strike") == "#strike"
    assert ScopeMatcher([check_term("Lost Luggage")]).match(preprocess("They LOST LUGGAGE again")) == ["all", "term:lost luggage"]


@pytest.mark.parametrize(
    ("term", "message"),
    [
        ("", "a watch term cannot be empty"),
        ("   ", "a watch term cannot be empty"),
        ("abcdefghij" * 4 + "k", f"watch term {'abcdefghij' * 4!r}... has 41 characters, at most 40"),
        ("delay, cancel", "watch term 'delay, cancel' may not hold commas, angle brackets, links, @handles or control characters"),
        ("@airparadis", "watch term '<user>' may not hold commas, angle brackets, links, @handles or control characters"),
        ("---", "watch term '---' needs at least one letter or digit"),
    ],
)
def test_a_bad_term_is_refused_with_the_reason(term, message):
    with pytest.raises(InvalidTerm) as refused:
        check_term(term)
    assert str(refused.value) == message


def test_duplicates_are_refused_once_normalised():
    with pytest.raises(InvalidTerm) as refused:
        check_terms(["delay", "Refund", "DELAY "])
    assert str(refused.value) == "'delay' is already watched"


def test_the_number_of_terms_is_capped():
    assert len(check_terms([f"t{i}" for i in range(MAX_TERMS)])) == MAX_TERMS
    with pytest.raises(InvalidTerm) as refused:
        check_terms([f"t{i}" for i in range(MAX_TERMS + 1)])
    assert str(refused.value) == f"at most {MAX_TERMS} watch terms, got {MAX_TERMS + 1}"
