# The joblens service image. Redis and Elasticsearch come from docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY devstack ./devstack
COPY index_templates ./index_templates
RUN pip install . && useradd --system --no-create-home joblens
ENV JOBLENS_INDEX_TEMPLATES_DIR=/app/index_templates

USER joblens
WORKDIR /
EXPOSE 8080
CMD ["joblens", "serve", "--host", "0.0.0.0", "--port", "8080"]
