# shellcheck shell=bash
# Helpers shared by the launchers; sourced, not run. DRY_RUN=1 makes `run` print only.

# Stop with a message naming the launcher.
die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# Print a command, quoted so that it can be pasted into a shell.
show() {
  local out="+" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+~-]+$ ]]; then out+=" $arg"; else out+=" '${arg//\'/\'\\\'\'}'"; fi
  done
  echo "$out"
}

# Run a command, or only print it under --dry-run.
run() {
  show "$@"
  if [[ ${DRY_RUN:-0} == 0 ]]; then "$@"; fi
}

# The config file of training stage 1 or 2.
stage_config() {
  [[ $1 == 1 || $1 == 2 ]] || die "--stage must be 1 or 2, got '$1'"
  echo "configs/stage$1.py"
}

# The CLIP tokenizer's BPE vocabulary comes from this package, installed without its dependencies (torch);
# the same pin as the README's first command and stylecrafter_jax/conditioning/tokenizer.py.
# shellcheck disable=SC2034  # used by the launchers that source this file
CLIP_VOCAB_PACKAGE=open_clip_torch==3.3.0

# The JAX devices of a TPU type: v4-N and v5p-N count TensorCores (2 per chip, one device), the others devices.
tpu_devices() {
  local count=${1##*-}
  [[ $count =~ ^[0-9]+$ ]] || die "cannot read the size of TPU type '$1'"
  case "$1" in
    v4-*|v5p-*) echo $((count / 2)) ;;
    *) echo "$count" ;;
  esac
}

# Stage 2's global batch (8 videos; 128 images packed into 8 pseudo-videos of 16 frames) splits over 1, 2, 4 or 8
# devices; on other counts the flags for one video and 16 images per device (nothing when the defaults divide).
stage2_batch_flags() {
  local devices=$1
  (( devices > 0 && 8 % devices == 0 )) && return 0
  echo "--config.data.videos.batch_size=$devices --config.data.images.batch_size=$((16 * devices))"
}
