# The streaming worker: serving dependencies only (no TensorFlow, no torch).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY badbuzz badbuzz
COPY stream stream
COPY models models
COPY alerting alerting
COPY training training
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --create-home --uid 10001 badbuzz
USER badbuzz
ENV BADBUZZ_HOME=/home/badbuzz/var
EXPOSE 6066
CMD ["badbuzz", "worker"]
