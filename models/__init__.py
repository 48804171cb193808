"""Sentiment models behind one interface: ``Scorer.score_batch(texts) -> P(negative)``."""
from models.scorer import ModelInfo, Scorer, load_scorer

__all__ = ["ModelInfo", "Scorer", "load_scorer"]
