"""Terms in posts: which counting scopes a post belongs to (always the global one, plus
each watch term it mentions) and which of its words may explain a negative spike. Pure."""
from __future__ import annotations

import re
from typing import Sequence

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from models.preprocess import USER_TOKEN, URL_TOKEN, tokens

from stream.windows import GLOBAL_SCOPE

TERM_SCOPE_PREFIX = "term:"


def term_scope(term: str) -> str:
    return f"{TERM_SCOPE_PREFIX}{term}"


class ScopeMatcher:
    """Matches watch terms at word starts in preprocessed text, so "cancel" also counts
    "cancelled" and "cancellation", and "lost luggage" matches the phrase."""

    def __init__(self, terms: Sequence[str]):
        self.terms = tuple(dict.fromkeys(t.strip().lower() for t in terms if t.strip()))
        self._patterns = [
            (term_scope(term), re.compile(r"(?<![\w#])#?" + r"\s+".join(map(re.escape, term.split()))))
            for term in self.terms
        ]

    @property
    def scopes(self) -> list[str]:
        return [GLOBAL_SCOPE, *(term_scope(t) for t in self.terms)]

    def match(self, clean_text: str) -> list[str]:
        return [GLOBAL_SCOPE, *(scope for scope, pattern in self._patterns if pattern.search(clean_text))]


# Airline chatter words that are everywhere and explain nothing about a spike.
_NOISE = frozenset({"flight", "flights", "amp", "just", "get", "got", "im", "dont", "thanks", "rt"})
_MAX_DRIVER_TERMS = 24


def driver_terms(clean_text: str) -> list[str]:
    """Distinct content words of a preprocessed post, in order (placeholders, numbers,
    stop words and very short words left out)."""
    seen: dict[str, None] = {}
    for token in tokens(clean_text):
        word = token.lstrip("#")
        if (
            len(word) >= 3
            and token not in (USER_TOKEN, URL_TOKEN)
            and not word.isdigit()
            and word not in ENGLISH_STOP_WORDS
            and word not in _NOISE
        ):
            seen.setdefault(word, None)
            if len(seen) == _MAX_DRIVER_TERMS:
                break
    return list(seen)
