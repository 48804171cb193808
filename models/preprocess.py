"""The one text normaliser, used by training and by the stream alike.

Anything that changes here changes what every model sees, so training records
``PREPROCESS_VERSION`` beside each model and serving refuses a mismatch."""
from __future__ import annotations

import html
import re
import unicodedata

PREPROCESS_VERSION = 1

URL_TOKEN = "<url>"
USER_TOKEN = "<user>"

_URL = re.compile(r"(?:https?://|www\.)\S+|\b[a-z0-9-]+\.(?:com|net|org|ly|co|io)/\S*", re.IGNORECASE)
# Every URL the pattern above can match contains one of these; most posts have none, and
# looking for them is far cheaper than trying the URL pattern at every word.
_URL_HINT = re.compile(r"://|www\.|\.(?:com|net|org|ly|co|io)/", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@\w{1,30}")
_REPEAT = re.compile(r"(.)\1{3,}")


MASKED_USER = "@user"


def _anonymise(text: str, url: str, user: str) -> str:
    """HTML unescaped and NFKC-normalised (so a full-width ＠ is a handle too), then
    links replaced by ``url`` and handles by ``user``."""
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text)
    if _URL_HINT.search(text):
        text = _URL.sub(url, text)
    return _HANDLE.sub(user, text)


def mask(text: str) -> str:
    """A post as people may read it (the console's example posts): handles become
    ``@user`` and links ``<url>``, by the same patterns the models' input is anonymised
    with; case and wording are left alone."""
    return _anonymise(text, URL_TOKEN, MASKED_USER)


def preprocess(text: str) -> str:
    """Lower-case, anonymise handles and URLs, unescape HTML, collapse whitespace.

    Handles become ``<user>`` so no model (and nothing derived from its input, such as
    alert driver terms) ever carries a raw user name."""
    text = _anonymise(text, f" {URL_TOKEN} ", f" {USER_TOKEN} ")
    text = text.lower()
    # "sooooo" and "soooo" are the same word to a reader; keep three so emphasis survives.
    text = _REPEAT.sub(r"\1\1\1", text)
    # str.split() and the regex \s agree on what whitespace is (Py_UNICODE_ISSPACE).
    return " ".join(text.split())


_TOKEN = re.compile(r"<url>|<user>|#?[a-z0-9][a-z0-9'_-]*")


def tokens(clean_text: str) -> list[str]:
    """Word tokens of already-preprocessed text (placeholders kept whole)."""
    return _TOKEN.findall(clean_text)
