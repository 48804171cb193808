"""Training: load and clean labelled tweets, fit a model family, log it to MLflow."""
