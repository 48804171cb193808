"""Bidirectional GRU over word ids, served from ONNX with onnxruntime.

The bundle holds ``model.onnx`` (int32 ids ``[batch, time]`` in, P(negative) ``[batch, 1]``
out) and ``vocab.json`` (token -> id, the maximum length and the padding side). Training
(``training.gru``) encodes with the very same ``Vocabulary``, so ids cannot drift between
the two sides. Nothing here imports TensorFlow: a worker needs only onnxruntime."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from models.preprocess import preprocess, tokens
from models.scorer import ModelError, ModelInfo, register_family

MODEL_FILE = "model.onnx"
VOCAB_FILE = "vocab.json"
MAX_LEN = 100
PAD_ID = 0
OOV_ID = 1
# Post-padding: the network masks id 0, so trailing pads change no output, and a batch
# only needs padding up to its longest post rather than to MAX_LEN.
PADDING = "post"


@dataclass(frozen=True)
class Vocabulary:
    """Token ids: 0 pads, 1 stands for any token outside the vocabulary."""

    ids: dict[str, int]
    max_len: int = MAX_LEN

    @property
    def size(self) -> int:
        """Rows the embedding needs: the two reserved ids plus every token."""
        return max(self.ids.values(), default=OOV_ID) + 1

    def encode(self, clean_texts: Sequence[str], width: int | None = None) -> np.ndarray:
        """int32 ids ``[len(clean_texts), width]``, post-padded with 0, each post cut after
        ``max_len`` tokens. ``width`` defaults to the longest post (at least 1, at most
        ``max_len``); the masked network scores both widths the same."""
        rows = [[self.ids.get(tok, OOV_ID) for tok in tokens(text)][: self.max_len] for text in clean_texts]
        if width is None:
            width = min(self.max_len, max((len(row) for row in rows), default=0)) or 1
        out = np.full((len(rows), width), PAD_ID, dtype=np.int32)
        for i, row in enumerate(rows):
            row = row[:width]
            out[i, : len(row)] = row
        return out

    def to_json(self) -> str:
        return json.dumps(
            {"max_len": self.max_len, "padding": PADDING, "pad_id": PAD_ID, "oov_id": OOV_ID, "tokens": self.ids},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        data = json.loads(text)
        expected = {"padding": PADDING, "pad_id": PAD_ID, "oov_id": OOV_ID}
        found = {key: data.get(key) for key in expected}
        if found != expected:
            raise ValueError(f"vocabulary layout {found} differs from the one this code encodes, {expected}")
        return cls(ids=dict(data["tokens"]), max_len=int(data["max_len"]))


class GruScorer:
    def __init__(self, session: ort.InferenceSession, vocab: Vocabulary, info: ModelInfo):
        self.session = session
        self.vocab = vocab
        self.info = info
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.score_clean([preprocess(t) for t in texts])

    def score_clean(self, clean_texts: Sequence[str]) -> np.ndarray:
        if not clean_texts:
            return np.zeros(0, dtype=np.float64)
        ids = self.vocab.encode(clean_texts)
        (p_negative,) = self.session.run([self._output], {self._input: ids})
        return p_negative.reshape(-1).astype(np.float64)


def open_session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread: the GRU's time steps run in sequence, so a second thread bought under 3%
    # on 64-post batches and nothing on single posts (2-core machine), while onnxruntime's
    # spinning pool threads would take CPU from the worker's Kafka and Redis I/O.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


# What onnxruntime raises for a missing, truncated or malformed model file.
_ORT_LOAD_ERRORS = (
    ort_state.NoSuchFile, ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.Fail,
)


@register_family("gru")
def load(bundle_dir: Path, info: ModelInfo) -> GruScorer:
    try:
        vocab = Vocabulary.from_json((bundle_dir / VOCAB_FILE).read_text(encoding="utf-8"))
        session = open_session(bundle_dir / MODEL_FILE)
    except (OSError, ValueError, KeyError, *_ORT_LOAD_ERRORS) as exc:
        raise ModelError(f"cannot load the gru model at {bundle_dir}: {exc}") from exc
    return GruScorer(session, vocab, info)
