# The grading worker: a Dask worker with the grader, TensorFlow and bubblewrap.
# (README: Grading on a cluster.) Build from a clone of this repository:
#     docker build -t keras-grader-worker .
# Run it (the sandbox needs user namespaces, which Docker's defaults forbid):
#     docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#         --security-opt systempaths=unconfined keras-grader-worker tcp://SCHEDULER:8786
# The same image runs the scheduler:
#     docker run -p 8786:8786 --entrypoint dask keras-grader-worker scheduler
FROM python:3.11-slim-bookworm

# bubblewrap makes each run's sandbox; nothing else of the system is needed
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/grader
COPY pyproject.toml README.md ./
COPY grader grader
COPY reference reference
COPY labs labs
COPY assignments assignments
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 1000 grader

# The worker runs unprivileged; the sandbox maps its runs to uid 65534 in a user
# namespace of its own. Staged data and weights, and the feature cache unless a shared
# folder is mounted there, live in the worker's cache folder.
USER grader
ENV XDG_CACHE_HOME=/home/grader/.cache TF_CPP_MIN_LOG_LEVEL=2
# TensorFlow's memory is not Dask's data: never pause or spill, only restart at the limit
ENV DASK_DISTRIBUTED__WORKER__MEMORY__TARGET=False \
    DASK_DISTRIBUTED__WORKER__MEMORY__SPILL=False \
    DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE=False
# One grading at a time per worker (each keeps about two cores busy); give each
# container 2 cores and [grader] memory_mb of memory.
ENTRYPOINT ["dask", "worker", "--nthreads", "1", "--memory-limit", "8GiB"]
CMD ["tcp://scheduler:8786"]
