#!/usr/bin/env bash
# Install into .venv, index a LoRA folder and print the LoRAs most similar to one of them.
#
# usage: tools/run.sh [LORA_FOLDER ...] [options of `lora-embedding index`]
# With no folder, the ComfyUI or WebUI LoRA folder around this repository is used.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/tools/setup_env.sh" ui
exec "$repo/.venv/bin/lora-embedding" index "$@" --show-similar
