#!/usr/bin/env bash
# Idempotent machine set-up: Debian packages, the project-local libtorch venv, the libtorch link
# folder torch-sys builds against, then a build. A second run after success takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages: HDF5 (feature cache), ffmpeg (video files), pkg-config.
need=()
for pkg in libhdf5-dev hdf5-tools pkg-config ffmpeg fonts-dejavu-core; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. libtorch from a project-local venv. With an NVIDIA GPU: the full wheel (CUDA works);
#    without: the lean wheel (libtorch_cpu + two small CUDA runtime wheels it links against).
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi
flavour=$([ $gpu = 1 ] && echo cuda || echo cpu)
stamp=".venv/.torch-$TORCH_VERSION-$flavour"
if [ ! -f "$stamp" ]; then
  say "installing torch $TORCH_VERSION ($flavour) into .venv (about 1 minute)"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  if [ $gpu = 1 ]; then
    .venv/bin/pip install -q "torch==$TORCH_VERSION"
  else
    .venv/bin/pip install -q --no-deps "torch==$TORCH_VERSION" \
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  fi
  rm -f .venv/.torch-*
  touch "$stamp"
fi

# 3. The folder torch-sys builds against (LIBTORCH in .cargo/config.toml).
torch_dir=$(cd .venv/lib/python3*/site-packages/torch && pwd)
link_dir=third_party/libtorch-cpu
if [ ! -e "$link_dir/.flavour-$flavour" ]; then
rm -rf "$link_dir"
mkdir -p "$link_dir/lib"
ln -sfn "$torch_dir/include" "$link_dir/include"
if [ $gpu = 1 ]; then
  for f in "$torch_dir"/lib/*.so*; do ln -sfn "$f" "$link_dir/lib/$(basename "$f")"; done
else
  ln -sfn "$torch_dir/lib/libc10.so" "$link_dir/lib/libc10.so"
  ln -sfn "$torch_dir/lib/libtorch_cpu.so" "$link_dir/lib/libtorch_cpu.so"
  ln -sfn "$torch_dir/lib/libtorch_cpu.so" "$link_dir/lib/libtorch.so"
fi
touch "$link_dir/.flavour-$flavour"
fi

# 3b. MTCNN face-detector weights (P-Net, R-Net, O-Net) for `extractor faces` and
#     `extract --detect-faces`: the three torch.save'd state dicts inside the facenet-pytorch 2.6.0
#     wheel (MIT licence), read natively at run time; nothing is fetched when the tools run.
mtcnn_dir=third_party/mtcnn
if [ ! -f "$mtcnn_dir/onet.pt" ] || [ ! -f "$mtcnn_dir/rnet.pt" ] || [ ! -f "$mtcnn_dir/pnet.pt" ]; then
  say "fetching the MTCNN weights (facenet-pytorch 2.6.0 wheel, 1.9 MB) into $mtcnn_dir"
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps "facenet-pytorch==2.6.0" -d "$tmp"
  mkdir -p "$mtcnn_dir"
  python3 -m zipfile -e "$tmp"/facenet_pytorch-2.6.0-*.whl "$tmp/x"
  for net in pnet rnet onet; do cp "$tmp/x/facenet_pytorch/data/$net.pt" "$mtcnn_dir/$net.pt"; done
  rm -rf "$tmp"
fi

# 4. Build the binaries (release) so `make demo` and the tests find them.
say "building (cargo build --release; the first build compiles torch-sys, 2-4 minutes)"
cargo build --release --quiet --bins
say "ready"
