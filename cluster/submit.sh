#!/bin/sh
# Run a sweep on the docker compose cluster: `docker compose run --rm submit SPEC [metasweep run options]`.
#
# A Ray driver given a GCS address (host:6379) must run on a Ray node, so this container first joins
# the cluster as a node with no CPUs (trials never run here), then runs `metasweep run` with the
# head's address and the compose MLflow server. (Ray Client, ray://ray-head:10001, would need the
# ray[client] extra and runs Tune's driver on the head; not used.) The JSON summary is the last line
# of stdout; Ray's start-up messages go to stderr.
set -eu
: "${RAY_HEAD_ADDRESS:=ray-head:6379}"
: "${MLFLOW_TRACKING_URI:?MLFLOW_TRACKING_URI must point at the MLflow server (http://mlflow:5000)}"
if [ "$#" -lt 1 ]; then
    echo "submit: error: give a spec file, e.g. docker compose run --rm submit specs/paper-fig2.yaml" >&2
    exit 2
fi
ray start --address="$RAY_HEAD_ADDRESS" --num-cpus=0 --disable-usage-stats 1>&2
exec metasweep run "$@" --address "$RAY_HEAD_ADDRESS" --tracking-uri "$MLFLOW_TRACKING_URI"
