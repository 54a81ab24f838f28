# The Thuis services (ingest, workers, portal, simulator, command line) as one image; docker-compose.yml
# runs it. It holds every package pyproject.toml installs and the data files the code reads beside itself;
# tests/deploy/test_image.py lays the image's /app out from this file and runs the code from there.
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /app thuis
# Where the compose file's local SMTP server keeps what it receives: a volume there starts out as the
# image's folder, owned by the user the server runs as.
RUN mkdir -p /var/lib/thuis/mail && chown thuis /var/lib/thuis/mail
WORKDIR /app

# The dependencies first, in a layer of their own, so that a change to the code does not fetch them again.
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        >/tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The packages of [tool.setuptools.packages.find], ground floor first, each with its package data.
COPY thuis thuis
COPY mqttv5 mqttv5
COPY privacy privacy
COPY ingest ingest
COPY rollup rollup
COPY retention retention
COPY api api
COPY gateway_sim gateway_sim
COPY ops ops
COPY cli cli
# Data the code finds relative to its own files: ops/migrate.py reads migrations/, ops/localstack.py the
# broker's configuration in deploy/mosquitto/; deploy/compose/ holds the scripts docker-compose.yml runs.
COPY migrations migrations
COPY deploy deploy
# Editable, so that the packages stay in /app beside migrations/ and deploy/: installed as a wheel they
# would move to site-packages, where `parent.parent / "migrations"` finds nothing.
RUN pip install --no-cache-dir --no-deps -e .

USER thuis
ENTRYPOINT ["thuis"]
