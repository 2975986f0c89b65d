# The project image: metasweep on the official Ray image of the pinned Ray version (pyproject.toml)
# and Python 3.11. Every Ray node of docker-compose.yml, the cluster launcher (cluster/ray-cluster.yaml)
# and KubeRay (cluster/kuberay/) runs this image; so do the MLflow server and the sweep submitter.
# No ENTRYPOINT: the cluster launcher and KubeRay start `ray start ...` in it themselves.
FROM rayproject/ray:2.60.0-py311-cpu

# the base image runs as `ray` (uid 1000, home /home/ray) with Python 3.11 in /home/ray/anaconda3
WORKDIR /home/ray/metasweep
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users solvers ./solvers
COPY --chown=ray:users sweeps ./sweeps
COPY --chown=ray:users tracking ./tracking
COPY --chown=ray:users cluster ./cluster
# the pinned project (its ray pin is the base image's Ray) with psycopg 3 for the PostgreSQL store;
# folders that named volumes mount over are created here so the volumes belong to `ray`
RUN pip install --no-cache-dir ".[postgres,openspiel]" \
 && python -c "import ray, sweeps.cli; assert ray.__version__ == '2.60.0', ray.__version__" \
 && mkdir -p /home/ray/work/runs /home/ray/work/specs /home/ray/mlartifacts /home/ray/.cache/numba
ENV RAY_USAGE_STATS_ENABLED=0 \
    MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true \
    NUMBA_CACHE_DIR=/home/ray/.cache/numba
USER ray
WORKDIR /home/ray/work
CMD ["metasweep", "--help"]
