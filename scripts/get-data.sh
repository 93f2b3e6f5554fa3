#!/usr/bin/env bash
# Make sure Fashion-MNIST (the default dataset) is available: found in the data root or in the
# Debian package's folder, else installed from the Debian package when we are root, else explained.
set -euo pipefail
root="${TICKETLAB_DATA_ROOT:-data}"
for dir in "$root/fashion-mnist" "$root/FashionMNIST/raw" /usr/share/datasets/fashion-mnist; do
  if ls "$dir"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Fashion-MNIST from the Debian package dataset-fashion-mnist" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "Fashion-MNIST is missing: as root run 'apt-get install dataset-fashion-mnist', or put its four IDX files in $root/fashion-mnist" >&2
  exit 1
fi
