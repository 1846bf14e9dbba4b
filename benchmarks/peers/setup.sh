#!/usr/bin/env bash
# Installs each peer in its own virtualenv (pinned versions), so their dependencies never touch
# ours:  bash benchmarks/peers/setup.sh [DIR]   (default: ~/.cache/rlvr_jax_peers)
set -euo pipefail
DIR="${1:-${RLVR_PEERS_DIR:-$HOME/.cache/rlvr_jax_peers}}"
mkdir -p "$DIR"
[ -x "$DIR/tunix/bin/python" ] || python3 -m venv "$DIR/tunix"
"$DIR/tunix/bin/pip" install -q "google-tunix==0.1.7"
[ -x "$DIR/trl/bin/python" ] || python3 -m venv "$DIR/trl"
# torch pinned: this wheel is the CPU build; an unpinned torch pulls in CUDA libraries.
"$DIR/trl/bin/pip" install -q "torch==2.13.0" "trl==1.16.0"
echo "peers installed under $DIR"
