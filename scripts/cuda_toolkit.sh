#!/usr/bin/env bash
# Makes `cargo clippy/build --features cuda` possible on a Debian 12 machine without a GPU:
# installs Debian's CUDA 11.8 toolkit (non-free, about 1.7 GB) and g++-11 (nvcc 11.8 refuses
# Debian 12's gcc 12), once. Fast when both are present. Compile-checking is all this gives:
# running on a GPU needs a machine that has one (see README, "GPU").
#
#   scripts/cuda_toolkit.sh        (as root, or with nvcc and g++-11 already installed)
set -euo pipefail

if command -v nvcc >/dev/null 2>&1 && command -v g++-11 >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "cuda_toolkit: nvcc or g++-11 is missing; install nvidia-cuda-toolkit and g++-11 (needs root)" >&2
  exit 1
fi
# The toolkit is in Debian's non-free component: enable it in whichever source format the
# machine uses (deb822 `debian.sources`, or one-line `sources.list`).
sources=/etc/apt/sources.list.d/debian.sources
if [ -f "$sources" ] && ! grep -q 'non-free' "$sources"; then
  echo "cuda_toolkit: enabling Debian's contrib and non-free components in $sources" >&2
  sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' "$sources"
elif [ -f /etc/apt/sources.list ] && grep -q '^deb .* main' /etc/apt/sources.list &&
  ! grep -q 'non-free' /etc/apt/sources.list; then
  echo "cuda_toolkit: enabling Debian's contrib and non-free components in /etc/apt/sources.list" >&2
  sed -i '/^deb /s/ main$/ main contrib non-free non-free-firmware/' /etc/apt/sources.list
fi
echo "cuda_toolkit: installing nvidia-cuda-toolkit and g++-11 (apt, about 1.7 GB, once)" >&2
apt-get update -qq
# The package's DKMS step fails harmlessly inside a container; the toolkit itself installs.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  nvidia-cuda-toolkit g++-11 >/dev/null || true
command -v nvcc >/dev/null 2>&1 || { echo "cuda_toolkit: nvcc did not install" >&2; exit 1; }
command -v g++-11 >/dev/null 2>&1 || { echo "cuda_toolkit: g++-11 did not install" >&2; exit 1; }
