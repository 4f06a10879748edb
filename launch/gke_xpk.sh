#!/usr/bin/env bash
# Train on TPU slices in GKE through XPK (pip install xpk): optionally create the cluster, then
# submit a workload whose image is a Python base image plus this repository (XPK copies
# --script-dir into the image), on one slice or across several (multi-slice, DCN data parallel).
#
#   launch/gke_xpk.sh --cluster NAME --zone ZONE --project PROJECT [options] [-- extra train flags]
#
# Options:
#   --cluster NAME         GKE cluster made by `xpk cluster create`
#   --zone ZONE            zone of the cluster
#   --project PROJECT      GCP project
#   --tpu-type TYPE        slice type (default v5p-128)
#   --num-slices N         slices; N > 1 splits the data axis across them (default 1)
#   --workload NAME        workload name (default stylecrafter-stageS-<time>)
#   --stage 1|2            train configs/stage1.py or configs/stage2.py (default 1)
#   --config PATH[:ARG]    any config file instead of --stage
#   --workdir gs://...     checkpoints and logs; must be a bucket, shared by all hosts
#   --base-image IMAGE     Python base image (default python:3.11)
#   --create-cluster       run `xpk cluster create` first
#   --dry-run              print the commands instead of running them
set -euo pipefail

CLUSTER=""
ZONE=""
PROJECT=""
TPU_TYPE=v5p-128
SLICES=1
WORKLOAD=""
STAGE=1
CONFIG=configs/stage1.py
WORKDIR=""
BASE_IMAGE=python:3.11
CREATE=0
DRY_RUN=0
JAX_VERSION=0.10.2
TRAIN_ARGS=()

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cluster) CLUSTER=$2; shift 2 ;;
    --zone) ZONE=$2; shift 2 ;;
    --project) PROJECT=$2; shift 2 ;;
    --tpu-type) TPU_TYPE=$2; shift 2 ;;
    --num-slices) SLICES=$2; shift 2 ;;
    --workload) WORKLOAD=$2; shift 2 ;;
    --stage) CONFIG=$(stage_config "$2"); STAGE=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --workdir) WORKDIR=$2; shift 2 ;;
    --base-image) BASE_IMAGE=$2; shift 2 ;;
    --create-cluster) CREATE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; TRAIN_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[[ -n $CLUSTER && -n $ZONE && -n $PROJECT ]] || die "--cluster, --zone and --project are required"
[[ $SLICES =~ ^[1-9][0-9]*$ ]] || die "--num-slices must be a positive integer, got '$SLICES'"
[[ -z $WORKDIR || $WORKDIR == gs://* ]] || die "--workdir must be a gs:// bucket path that every host can write"
WORKLOAD=${WORKLOAD:-stylecrafter-stage$STAGE-$(date +%m%d-%H%M)}


LOCATION=(--zone="$ZONE" --project="$PROJECT")
if [[ $CREATE == 1 ]]; then
  run xpk cluster create --cluster="$CLUSTER" --tpu-type="$TPU_TYPE" --num-slices="$SLICES" "${LOCATION[@]}"
fi

TRAIN=(python -m stylecrafter_jax.train --config="$CONFIG" --config.mesh.distributed.initialize=always)
[[ $SLICES == 1 ]] || TRAIN+=(--config.mesh.dcn_data="$SLICES")
[[ -z $WORKDIR ]] || TRAIN+=(--config.workdir="$WORKDIR")
if [[ $CONFIG == configs/stage2.py ]]; then  # per-mesh batch sizes (launch/README.md); flags after -- win
  read -ra BATCH <<< "$(stage2_batch_flags $(($(tpu_devices "$TPU_TYPE") * SLICES)))"
  TRAIN+=("${BATCH[@]}")
fi
TRAIN+=("${TRAIN_ARGS[@]}")
printf -v TRAIN_LINE '%q ' "${TRAIN[@]}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run xpk workload create --cluster="$CLUSTER" --workload="$WORKLOAD" --tpu-type="$TPU_TYPE" \
  --num-slices="$SLICES" "${LOCATION[@]}" --base-docker-image="$BASE_IMAGE" --script-dir="$ROOT" \
  --command="pip install --quiet -r requirements.txt 'jax[tpu]==$JAX_VERSION' \
&& pip install --quiet --no-deps $CLIP_VOCAB_PACKAGE && PYTHONUNBUFFERED=1 ${TRAIN_LINE% }"
echo "# follow it with: xpk workload list --cluster=$CLUSTER ${LOCATION[*]}"
