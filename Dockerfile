# The Thuis services (ingest, workers, portal, simulator, command line) as one image; docker-compose.yml runs it.
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /app thuis
WORKDIR /app
COPY pyproject.toml README.md ./
COPY thuis thuis
COPY ingest ingest
COPY api api
COPY retention retention
COPY rollup rollup
COPY gateway_sim gateway_sim
COPY migrations migrations
COPY deploy deploy
# Editable, so the migrations and deploy files stay beside the code that reads them.
RUN pip install --no-cache-dir -e .

USER thuis
ENTRYPOINT ["thuis"]
