"""Terms in posts: which counting scopes a post belongs to (always the global one, plus
each watch term it mentions) and which of its words may explain a negative spike. Pure."""
from __future__ import annotations

import re
from collections.abc import Sequence

import ahocorasick
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from counting.windows import GLOBAL_SCOPE
from models.preprocess import URL_TOKEN, USER_TOKEN, tokens

TERM_SCOPE_PREFIX = "term:"


def term_scope(term: str) -> str:
    return f"{TERM_SCOPE_PREFIX}{term}"


class ScopeMatcher:
    """Matches watch terms at word starts in preprocessed text, so "cancel" also counts
    "cancelled" and "cancellation", and "lost luggage" matches the phrase."""

    def __init__(self, terms: Sequence[str]):
        self.terms = tuple(dict.fromkeys(" ".join(t.lower().split()) for t in terms if t.strip()))
        # preprocess() leaves single spaces between words, so a term is a plain string
        # there, and one Aho-Corasick pass finds every term in a post (a regex per term
        # was a tenth of the worker's time with fifty terms).
        self._automaton = ahocorasick.Automaton()
        for index, term in enumerate(self.terms):
            self._automaton.add_word(term, (index, len(term)))
        if self.terms:
            self._automaton.make_automaton()

    @property
    def scopes(self) -> list[str]:
        return [GLOBAL_SCOPE, *(term_scope(t) for t in self.terms)]

    def match(self, clean_text: str) -> list[str]:
        if not self.terms:
            return [GLOBAL_SCOPE]
        found = sorted({index for end, (index, length) in self._automaton.iter(clean_text) if _word_start(clean_text, end - length + 1)})
        return [GLOBAL_SCOPE, *(term_scope(self.terms[i]) for i in found)]


_WORD_OR_HASH = re.compile(r"[\w#]")


def _word_start(text: str, at: int) -> bool:
    """``at`` begins a word or follows the ``#`` that begins one."""
    if at > 0 and text[at - 1] == "#":
        at -= 1
    return at == 0 or not _WORD_OR_HASH.match(text, at - 1)


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
