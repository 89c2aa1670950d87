#!/usr/bin/env bash
# Rebuilds the three ComfyUI test checkouts in /work/comfy (see README.txt).
# Needs the bare mirrors that the session's `fetch` tool brings (it cannot be called from here):
#   fetch github:Comfy-Org/ComfyUI, github:pollockjj/ComfyUI, github:Nmadagedara/ComfyUI
#   -> /work/.mirror/<owner>+ComfyUI/repo
# Usage: bash install.sh [NAME...]   (NAME: Comfy-Org pollockjj Nmadagedara; default all three)
#        STEPS="checkout venv" bash install.sh pollockjj   (steps: checkout venv stub pypath tools baseline runner)
set -euo pipefail

C=/work/comfy
MAIN=${MAIN:-/work/main}
STEPS=${STEPS:-"checkout venv stub pypath tools baseline"}
declare -A COMMIT=(
  [Comfy-Org]=a125cd84b054a57729b5eecab930ca9408719832    # 0.3.64, 2025-10-12
  [pollockjj]=618b803d314a525faca8f8163d85eaa9ebc1d774    # 0.8.0, 2026-01-07
  [Nmadagedara]=c4eb0e7f1851ea9da189f5ec2e4ecb9567067dd4  # 0.19.3, 2026-05-04, frontend 1.42.14
)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(Comfy-Org pollockjj Nmadagedara)
has() { [[ " $STEPS " == *" $1 "* ]]; }

mkdir -p "$C"
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$C/constraints.txt"

checkout() {  # $1 name
  local n=$1 dir=$C/$1 mirror=/work/.mirror/$1+ComfyUI/repo
  [ -d "$mirror" ] || { echo "no mirror $mirror: fetch github:$n/ComfyUI first" >&2; exit 1; }
  if [ ! -d "$dir/.git" ]; then git clone -q --no-checkout "$mirror" "$dir"; fi
  # The mirror lacks the blobs of its largest files (tokenizer JSONs of text encoders no test uses):
  # leave them out of the work tree with a sparse checkout.
  git -C "$dir" sparse-checkout init --no-cone >/dev/null 2>&1 || true
  printf '/*\n!/comfy/text_encoders/llama_tokenizer/tokenizer.json\n!/comfy/text_encoders/qwen35_tokenizer/vocab.json\n' \
    > "$dir/.git/info/sparse-checkout"
  git -C "$dir" -c advice.detachedHead=false checkout -q -f "${COMMIT[$n]}" 2>/dev/null || true
  git -C "$dir" read-tree -mu HEAD 2>/dev/null || true
  test -f "$dir/main.py" && grep -H __version__ "$dir/comfyui_version.py"
}

venv() {  # $1 name
  local n=$1 v=$C/venv-$1 dir=$C/$1
  [ -x "$v/bin/python" ] || python3 -m venv "$v"
  local pip="$v/bin/pip"
  "$pip" install -q torch==2.14.1 torchvision==0.29.1
  grep -v -i -E '^\s*torchaudio' "$dir/requirements.txt" > "$C/requirements-$n.txt"
  "$pip" install -q -c "$C/constraints.txt" -r "$C/requirements-$n.txt"
  # requests: app/frontend_management.py imports it, but 0.3.64/0.8.0 list it nowhere (it used to come with
  # huggingface_hub, whose 1.x no longer needs it).
  "$pip" install -q -c "$C/constraints.txt" pytest requests
  "$pip" install -q -c "$C/constraints.txt" -r "$MAIN/requirements.txt"
  "$pip" install -q -c "$C/constraints.txt" spandrel spandrel_extra_arches onnxruntime onnx onnxscript av facexlib \
    safetensors opencv-python
  "$pip" install -q --no-deps -e "$MAIN"
  "$v/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1'), torch.__version__; print('$n', torch.__version__, torchvision.__version__)"
}

stub() {  # torchaudio stand-in for 0.19.3 only (no torchaudio build matches torch 2.14.1)
  local v=$C/venv-Nmadagedara
  [ -x "$v/bin/python" ] || return 0
  local sp; sp=$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$C/torchaudio_stub" "$sp/torchaudio"
  cat > "$C/torchaudio_stub/__init__.py" <<'STUB'
"""Stand-in for torchaudio in venv-Nmadagedara only: no torchaudio build matches torch 2.14.1.

ComfyUI 0.19.3 imports torchaudio at start (comfy/sd.py -> comfy/ldm/lightricks/vae/audio_vae.py) but
uses it only inside functions, so an importable package is all start-up needs. Audio nodes fail when run.
"""

__version__ = "0.0.0-stub"


def __getattr__(name):
    raise AttributeError(f"torchaudio.{name}: this torchaudio is a stub (no build for torch 2.14.1); audio nodes are unavailable")
STUB
  cp "$C/torchaudio_stub/__init__.py" "$sp/torchaudio/__init__.py"
}

pypath() { mkdir -p "$C/pypath"; ln -sfn "$MAIN" "$C/pypath/comfyui_gfpgan"; }

baseline() {  # a detached worktree of $MAIN's HEAD for runs that concurrent edits in $MAIN must not touch
  [ -d /work/baseline ] || git -C "$MAIN" worktree add --detach /work/baseline HEAD
  mkdir -p "$C/pypath-baseline"; ln -sfn /work/baseline "$C/pypath-baseline/comfyui_gfpgan"
}

tools() {  # browser tests: chromium, node, playwright-core
  if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get update && apt-get install -y chromium
    command -v node >/dev/null && command -v npm >/dev/null || apt-get install -y nodejs npm
  fi
  mkdir -p /work/npm && (cd /work/npm && { [ -f package.json ] || npm init -y >/dev/null; } && npm install playwright-core)
}

runner() {  # a runner venv for the e2e test, only if /work/main/.venv is not usable
  local v=$C/venv-runner
  [ -x "$v/bin/python" ] || python3 -m venv "$v"
  "$v/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
  "$v/bin/pip" install -q -c "$C/constraints.txt" -e "${BASELINE:-/work/baseline}[test]"
}

for n in "${NAMES[@]}"; do has checkout && checkout "$n"; done
for n in "${NAMES[@]}"; do has venv && venv "$n"; done
if has stub; then stub; fi
if has pypath; then pypath; fi
if has tools; then tools; fi
if has baseline; then baseline; fi
if has runner; then runner; fi
echo done
