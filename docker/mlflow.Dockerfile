# The MLflow tracking server and Model Registry, with proxied artifact storage, at the
# same MLflow version the project pins.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt mlflow==3.17.2 \
 && useradd --create-home --uid 10001 mlflow \
 && mkdir /mlflow && chown mlflow /mlflow
USER mlflow
VOLUME /mlflow
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", \
     "--backend-store-uri", "sqlite:////mlflow/mlflow.db", "--artifacts-destination", "/mlflow/artifacts"]
