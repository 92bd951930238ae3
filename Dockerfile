# docker build -t genie-env . && docker run --rm -v "$PWD/coinrun_data:/app/coinrun_data" genie-env
# runs the default collection, like the original Genie-Opt script. The install is `make install`,
# the same steps the tested path runs.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends make libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
RUN make install

ENTRYPOINT ["/app/.venv/bin/genie"]
CMD ["collect"]
