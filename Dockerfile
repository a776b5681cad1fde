# One image for both services; everything comes from PyPI.
FROM python:3.11-slim
WORKDIR /app
# bubblewrap: the sandbox each model worker runs in (worker/sandbox.py).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.txt
COPY protocol ./protocol
COPY worker ./worker
COPY frontend ./frontend
COPY tools ./tools
COPY gunicorn.conf.py ./
RUN pip install --no-cache-dir --no-deps -e . && useradd --create-home service
USER service
ENV MODEL_DIR=/models
EXPOSE 8080 9000
