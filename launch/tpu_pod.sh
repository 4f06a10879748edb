#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (one host or a pod slice): create or reuse the TPU VM, copy the
# project to every worker, install it, and run the same train command on all workers at once.
#
#   launch/tpu_pod.sh --name NAME --zone ZONE [options] [-- extra train flags]
#
# Options:
#   --name NAME              TPU VM name (or $TPU_NAME)
#   --zone ZONE              zone (or $TPU_ZONE)
#   --project PROJECT        GCP project (default: gcloud's configured project)
#   --accelerator-type TYPE  slice to create when NAME does not exist (default v5p-32)
#   --version VERSION        TPU software version (default: the one Google recommends for TYPE)
#   --spot                   create the slice as Spot capacity
#   --stage 1|2              train configs/stage1.py or configs/stage2.py (default 1)
#   --config PATH[:ARG]      any config file instead of --stage
#   --workdir DIR            checkpoints and logs; must be shared by all hosts, e.g. gs://BUCKET/run
#   --source copy|git        copy the local working tree (default) or clone --repo at --ref
#   --repo URL --ref REF     for --source git
#   --skip-setup             reuse the copy and environment already on the workers
#   --dry-run                print the commands instead of running them
set -euo pipefail

NAME=${TPU_NAME:-}
ZONE=${TPU_ZONE:-}
PROJECT=""
ACCELERATOR=v5p-32
VERSION=""
SPOT=0
CONFIG=configs/stage1.py
WORKDIR=""
SOURCE=copy
REPO=""
REF=main
SKIP_SETUP=0
DRY_RUN=0
JAX_VERSION=0.10.2
REMOTE_DIR=stylecrafter-jax  # relative to the home directory on the workers
TRAIN_ARGS=()

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=$2; shift 2 ;;
    --zone) ZONE=$2; shift 2 ;;
    --project) PROJECT=$2; shift 2 ;;
    --accelerator-type) ACCELERATOR=$2; shift 2 ;;
    --version) VERSION=$2; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --stage) CONFIG=$(stage_config "$2"); shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --workdir) WORKDIR=$2; shift 2 ;;
    --source) SOURCE=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    --ref) REF=$2; shift 2 ;;
    --skip-setup) SKIP_SETUP=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; TRAIN_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[[ -n $NAME ]] || die "--name (or TPU_NAME) is required"
[[ -n $ZONE ]] || die "--zone (or TPU_ZONE) is required"
[[ $SOURCE == copy || $SOURCE == git ]] || die "--source must be copy or git, got '$SOURCE'"
[[ $SOURCE == copy || -n $REPO ]] || die "--source git needs --repo URL"
if [[ -z $VERSION ]]; then
  case "$ACCELERATOR" in
    v6e-*) VERSION=v2-alpha-tpuv6e ;;
    v5p-*) VERSION=v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) VERSION=v2-alpha-tpuv5-lite ;;
    *) VERSION=tpu-ubuntu2204-base ;;
  esac
fi

GCLOUD=(gcloud compute tpus tpu-vm)
LOCATION=(--zone="$ZONE")
[[ -z $PROJECT ]] || LOCATION+=(--project="$PROJECT")
on_all_workers() { run "${GCLOUD[@]}" ssh "$NAME" "${LOCATION[@]}" --worker=all --command="$1"; }

# 1. Create the slice unless it exists.
echo "# TPU VM $NAME in $ZONE (create as $ACCELERATOR with $VERSION if missing)"
DESCRIBE=("${GCLOUD[@]}" describe "$NAME" "${LOCATION[@]}")
CREATE=("${GCLOUD[@]}" create "$NAME" "${LOCATION[@]}" --accelerator-type="$ACCELERATOR" --version="$VERSION")
[[ $SPOT == 0 ]] || CREATE+=(--spot)
show "${DESCRIBE[@]}"
if [[ $DRY_RUN == 1 ]]; then
  echo "# only if describe fails:"
  show "${CREATE[@]}"
elif ! "${DESCRIBE[@]}" >/dev/null 2>&1; then
  run "${CREATE[@]}"
else
  echo "# reusing the existing TPU VM $NAME"
fi

# 2. Put the project on every worker and install it (Python 3.11 through uv; jax with libtpu; the CLIP vocabulary).
if [[ $SKIP_SETUP == 0 ]]; then
  echo "# copy the project to every worker"
  if [[ $SOURCE == copy ]]; then
    ARCHIVE=${TMPDIR:-/tmp}/stylecrafter-jax-src.tar.gz
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    PACK="cd $(printf %q "$ROOT") && git ls-files -z --cached --others --exclude-standard \
| tar --null -T - -czf $(printf %q "$ARCHIVE")"
    echo "+ $PACK"
    if [[ $DRY_RUN == 0 ]]; then bash -c "$PACK"; fi
    run "${GCLOUD[@]}" scp "$ARCHIVE" "$NAME":stylecrafter-jax-src.tar.gz "${LOCATION[@]}" --worker=all
    on_all_workers "mkdir -p $REMOTE_DIR && tar -xzf stylecrafter-jax-src.tar.gz -C $REMOTE_DIR"
  else
    on_all_workers "rm -rf $REMOTE_DIR && git clone --quiet $REPO $REMOTE_DIR && git -C $REMOTE_DIR checkout --quiet $REF"
  fi
  echo "# install on every worker"
  on_all_workers "cd $REMOTE_DIR && export PATH=\$HOME/.local/bin:\$PATH \
&& (command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh) \
&& uv venv --quiet --python 3.11 .venv \
&& uv pip install --quiet --python .venv/bin/python -r requirements.txt 'jax[tpu]==$JAX_VERSION' \
&& uv pip install --quiet --python .venv/bin/python --no-deps $CLIP_VOCAB_PACKAGE"
fi

# 3. The same command on all workers; JAX finds the other hosts through the TPU metadata.
TRAIN=(.venv/bin/python -m stylecrafter_jax.train --config="$CONFIG" --config.mesh.distributed.initialize=always)
[[ -z $WORKDIR ]] || TRAIN+=(--config.workdir="$WORKDIR")
if [[ $CONFIG == configs/stage2.py ]]; then  # per-mesh batch sizes (launch/README.md); flags after -- win
  read -ra BATCH <<< "$(stage2_batch_flags "$(tpu_devices "$ACCELERATOR")")"
  TRAIN+=("${BATCH[@]}")
fi
TRAIN+=("${TRAIN_ARGS[@]}")
printf -v TRAIN_LINE '%q ' "${TRAIN[@]}"
echo "# train on all workers; each host writes its own log, host 0 the summaries"
on_all_workers "cd $REMOTE_DIR && mkdir -p logs && set -o pipefail \
&& PYTHONUNBUFFERED=1 ${TRAIN_LINE}2>&1 | tee -a logs/train-\$(hostname).log"
