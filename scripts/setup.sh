#!/usr/bin/env bash
# Installs what building and testing semcorr needs; fast when everything is present.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if need rustup; then
      rustup component add "$component"
    else
      echo "setup: cargo $component is missing and rustup is not available" >&2
      exit 1
    fi
  fi
done
