"""A fine-tuned BERT-family classifier, served from int8 ONNX with onnxruntime.

The bundle holds ``model.int8.onnx`` (token ids ``[batch, sequence]`` in, logits
``[batch, 2]`` out), ``tokenizer.json`` (the fast WordPiece tokenizer the model was
fine-tuned with) and ``transformer.json`` (maximum length, padding id, the logit column
of "negative", the model's input names). Training (``training.transformer``) writes all
three; nothing here imports torch or transformers, so a worker needs only onnxruntime
and tokenizers."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from tokenizers import Encoding, Tokenizer

from models.preprocess import preprocess
from models.scorer import ModelError, ModelInfo, register_family

MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "transformer.json"
OUTPUT_NAME = "logits"
# Inputs a BERT-family graph may take, in the order the exporter declares them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Posts of a batch are sorted by length and run in chunks of this many, each padded only
# to its own longest post. Scoring is compute-bound and airline posts run 10 to 60 tokens,
# so padding 64 posts to the longest one wastes about half the work: chunks of 16 scored
# 2-2.5x more posts/s than chunks of 64 on 2 cores, and 8 gained nothing more.
CHUNK = 16


@dataclass(frozen=True)
class TransformerConfig:
    max_len: int
    pad_id: int
    negative_index: int
    inputs: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {"max_len": self.max_len, "pad_id": self.pad_id, "negative_index": self.negative_index,
             "inputs": list(self.inputs)},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> TransformerConfig:
        data = json.loads(text)
        inputs = tuple(data["inputs"])
        unknown = set(inputs) - set(INPUT_NAMES)
        if unknown or "input_ids" not in inputs:
            raise ValueError(f"model inputs {list(inputs)} are not a BERT-family input set {list(INPUT_NAMES)}")
        return cls(int(data["max_len"]), int(data["pad_id"]), int(data["negative_index"]), inputs)


def serving_tokenizer(tokenizer: Tokenizer, max_len: int) -> Tokenizer:
    """``tokenizer`` set up as serving uses it: cut to ``max_len`` tokens including
    [CLS]/[SEP], no padding (``features`` pads each chunk itself)."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_len)
    return tokenizer


def features(encodings: Sequence[Encoding], config: TransformerConfig) -> dict[str, np.ndarray]:
    """The model's int64 inputs for ``encodings``, right-padded to the longest of them."""
    width = max(len(e.ids) for e in encodings)
    arrays = {
        "input_ids": np.full((len(encodings), width), config.pad_id, dtype=np.int64),
        "attention_mask": np.zeros((len(encodings), width), dtype=np.int64),
        "token_type_ids": np.zeros((len(encodings), width), dtype=np.int64),
    }
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        arrays["input_ids"][row, :n] = encoding.ids
        arrays["attention_mask"][row, :n] = 1
        arrays["token_type_ids"][row, :n] = encoding.type_ids
    return {name: arrays[name] for name in config.inputs}


def p_negative(logits: np.ndarray, negative_index: int) -> np.ndarray:
    """Softmax column ``negative_index`` of ``logits``, in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, negative_index] / e.sum(axis=1)


class TransformerScorer:
    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, config: TransformerConfig, info: ModelInfo):
        self.session = session
        self.tokenizer = serving_tokenizer(tokenizer, config.max_len)
        self.config = config
        self.info = info

    def encode(self, clean_texts: Sequence[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(list(clean_texts))

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.score_clean([preprocess(t) for t in texts])

    def score_clean(self, clean_texts: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(clean_texts), dtype=np.float64)
        if not clean_texts:
            return out
        encodings = self.encode(clean_texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), CHUNK):
            rows = order[start:start + CHUNK]
            (logits,) = self.session.run([OUTPUT_NAME], features([encodings[i] for i in rows], self.config))
            out[rows] = p_negative(logits, self.config.negative_index)
        return out


def open_session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # The worker scores one micro-batch at a time beside Kafka and Redis I/O; two threads
    # use a small machine without oversubscribing it.
    options.intra_op_num_threads = min(2, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # Idle pool threads would otherwise spin between runs, taking CPU from the event loop
    # and the Kafka/Redis clients beside them. Measured on 2 cores: on an idle machine
    # spinning saves ~0.7 ms p50 (2.8 vs 3.5 ms); on a busy one it halved batch
    # throughput and, in one run, tripled the single-post latency.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def read_tokenizer(path: Path) -> Tokenizer:
    text = path.read_text(encoding="utf-8")
    try:
        return Tokenizer.from_str(text)
    # The Rust side raises a bare Exception for any malformed tokenizer file.
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path.name}: {exc}") from None


# What onnxruntime raises for a missing, truncated or malformed model file.
_ORT_LOAD_ERRORS = (ort_state.NoSuchFile, ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.Fail)


@register_family("transformer")
def load(bundle_dir: Path, info: ModelInfo) -> TransformerScorer:
    try:
        config = TransformerConfig.from_json((bundle_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        tokenizer = read_tokenizer(bundle_dir / TOKENIZER_FILE)
        session = open_session(bundle_dir / MODEL_FILE)
    except (OSError, ValueError, KeyError, *_ORT_LOAD_ERRORS) as exc:
        raise ModelError(f"cannot load the transformer model at {bundle_dir}: {exc}") from exc
    return TransformerScorer(session, tokenizer, config, info)
