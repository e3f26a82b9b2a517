# syntax=docker/dockerfile:1
#
# One image per set of extras; the default is the operator:
#
#   docker build -t lykeion-operator .
#   docker build -t lykeion-pipelines --build-arg EXTRAS=pipelines .
#   docker build -t lykeion-training --build-arg EXTRAS=training .
#   docker build -t lykeion-workloads --build-arg EXTRAS=pipelines,training .  # the chart's
#   docker build -t lykeion-serving --build-arg EXTRAS=serving,api,operator .
#       # model server, router, Feature API (its cluster loader uses kopf via lykeion.kube)
#
# Workload Jobs and model servers set their own command, so the ENTRYPOINT only matters
# for the operator. Without a registry: `buildah bud --build-arg
# PYTHON_IMAGE=localhost/lykeion-python:3.11-bookworm` (scripts/build-images.sh).

ARG PYTHON_IMAGE=python:3.11-slim

# The list of the extras' dependencies, read from pyproject.toml in a stage of its own: the
# dependency stage below copies only this list, so a change elsewhere in pyproject.toml
# (a version, a tool's settings) leaves its install in the layer cache.
FROM ${PYTHON_IMAGE} AS dependency-list
ARG EXTRAS=operator
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [d for e in sys.argv[1].split(',') for d in p['optional-dependencies'][e]]))" \
      "${EXTRAS}" > dependencies.txt

# The dependencies of the extras are a stage of their own: scripts/build-images.sh tags
# it, so that its layers stay cached while the builds of earlier code are pruned.
FROM ${PYTHON_IMAGE} AS dependencies
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Same path in both stages: a venv's scripts point at its absolute location.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Pinned versions: the image is reproducible from the same commit. The dependencies of
# the extras go in a layer of their own, so that a change of code alone reinstalls only
# the project (seconds, not minutes).
COPY requirements/ requirements/
COPY --from=dependency-list /src/dependencies.txt ./
RUN pip install -c requirements/constraints.txt -r dependencies.txt

FROM dependencies AS builder
ARG EXTRAS=operator
COPY pyproject.toml ./
COPY operator/ operator/
COPY lykectl/ lykectl/
RUN pip install --no-deps -c requirements/constraints.txt ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
ARG EXTRAS=operator
# Trainings pin their source with git (lykeion.training.source runs it), over https and
# ssh (git@host:repo.git#dir@SHA).
RUN case ",${EXTRAS}," in \
      *,training,*) apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           git openssh-client \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac
# uid 1000 to match the runAsUser of the chart and of the Jobs the operator creates.
RUN groupadd --gid 1000 lykeion \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin lykeion
COPY --from=builder /opt/venv /opt/venv
# The root filesystem is read-only in the cluster: no .pyc writes, HOME on a writable /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["lykeion-operator", "--health-host", "0.0.0.0", "--executor", "kubernetes"]
