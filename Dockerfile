# turnout's gateway image: slim, non-root, with the data path compiled by mypyc.
#
#   docker build -t turnout .
#   docker run --rm -p 8080:8080 -p 9901:9901 -v "$PWD/my.yaml:/etc/turnout/gateway.yaml:ro" turnout
#
# deploy/kubernetes/ runs it with its config from a ConfigMap and its secrets from a Secret.

# The build stage has the C compiler that mypyc needs; none of it reaches the image.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY gateway ./gateway
COPY routing ./routing
COPY experiments ./experiments
COPY plugins ./plugins
COPY inference_workers ./inference_workers
# A wheel with the compiled data path; the build fails rather than ship it in pure Python.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -c "import sys, zipfile; names = zipfile.ZipFile(next(__import__('pathlib').Path('/wheels').glob('*.whl'))).namelist(); sys.exit(0 if any(n.endswith('.so') for n in names) else 'the data path did not compile')"

FROM python:3.11-slim
# No .pyc writes into a read-only root; logs reach the container runtime at once.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /app --create-home turnout \
    && mkdir -p /app/var /etc/turnout \
    && chown turnout:turnout /app/var
WORKDIR /app
USER 10001:10001
# The gateway's default ports: data (listen.port) and admin (admin.port).
EXPOSE 8080 9901
# SIGTERM drains (the supervisor forwards it to every gateway process).
STOPSIGNAL SIGTERM
ENTRYPOINT ["turnout"]
CMD ["run", "--config", "/etc/turnout/gateway.yaml"]
