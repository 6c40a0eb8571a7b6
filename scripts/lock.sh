#!/usr/bin/env bash
# Regenerate the lock files after a dependency in pyproject.toml changed.
#
#   requirements-test.lock  everything `scripts/test.sh` installs (".[test]"), with hashes
#   requirements.lock       what `scripts/install-and-serve.sh` installs ("."), the same pins
#
# pyproject.toml keeps the lower bounds (what Moorage needs); the locks say what is tested and
# installed. Existing pins are kept unless asked otherwise: extra arguments go to
# `uv pip compile`, e.g. `bash scripts/lock.sh --upgrade` or `--upgrade-package boto3`.
# uv runs from a throwaway venv; the installs themselves use plain pip.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
tool="$(mktemp -d /tmp/moorage-lock.XXXXXX)"
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool/venv"
"$tool/venv/bin/pip" install -q "uv==$UV_VERSION"
compile=("$tool/venv/bin/uv" pip compile pyproject.toml --universal --python-version 3.11 \
    --generate-hashes --no-header --quiet "$@")
"${compile[@]}" --extra test -o requirements-test.lock
# The runtime set is constrained by the test set, so both files pin every shared package alike.
"${compile[@]}" -c requirements-test.lock -o requirements.lock
echo "==> requirements-test.lock and requirements.lock regenerated; commit both" >&2
