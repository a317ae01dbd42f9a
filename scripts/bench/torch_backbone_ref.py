#!/usr/bin/env python3
"""PyTorch feature-extraction peer for the torchvision backbones of issue 18.

What it does: the same peer as ../shared/peers/torch_extract_ref.py (imported by path: its
command line, frame maker, DataLoader pipeline -- PIL decode, resize, normalise in worker
processes, forward in inference mode, HDF5 write -- FLOP counter, timing protocol and JSON
output are used as they are, by running its main()) with torchvision's own modules as the
backbones, random init, eval mode, the classifier replaced by nn.Identity so that each returns
its pooled features, as `extractor extract --backbone <name>` does:

  resnet18 (512), resnet34 (512), resnet50 (2048), resnet101 (2048), resnet152 (2048),
  mobilenet_v2 (1280), densenet201 (1920), regnet_x_400mf (400), regnet_x_800mf (672),
  regnet_y_400mf (440), regnet_y_800mf (784), efficientnet_b0 (1280), efficientnet_b2 (1408)

all at 224x224 with ImageNet mean/std, except efficientnet_b2 at 260x260 (its input size in the
EfficientNet paper, the size `extractor` uses for it). The JSON line's "peer" field says
"torch_backbone_ref"; every other field is the shared peer's.

What it does not: load pretrained weights, or change the shared peer's own models (iresnet50,
iresnet100, densenet121, vit_b16 still run here, as there).

    fixture-venv/bin/python scripts/bench/torch_backbone_ref.py --models resnet50 --limit 128 \
        --reps 1 --batch 64 --threads 2 --frames-dir target/bench/frames --out-dir /tmp/peer
"""
import importlib.util
import os
import sys

import torch.nn as nn
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_PEER = os.environ.get(
    "SHARED_PEER",
    os.path.abspath(os.path.join(HERE, "..", "..", "..", "shared", "peers", "torch_extract_ref.py")))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name: (classifier attribute replaced by Identity, input side, pooled feature size)
BACKBONES = {
    "resnet18": ("fc", 224, 512),
    "resnet34": ("fc", 224, 512),
    "resnet50": ("fc", 224, 2048),
    "resnet101": ("fc", 224, 2048),
    "resnet152": ("fc", 224, 2048),
    "mobilenet_v2": ("classifier", 224, 1280),
    "densenet201": ("classifier", 224, 1920),
    "regnet_x_400mf": ("fc", 224, 400),
    "regnet_x_800mf": ("fc", 224, 672),
    "regnet_y_400mf": ("fc", 224, 440),
    "regnet_y_800mf": ("fc", 224, 784),
    "efficientnet_b0": ("classifier", 224, 1280),
    "efficientnet_b2": ("classifier", 260, 1408),
}


def load_shared_peer(path):
    if not os.path.isfile(path):
        sys.exit(f"shared peer {path} not found; set SHARED_PEER=path/to/torch_extract_ref.py")
    spec = importlib.util.spec_from_file_location("torch_extract_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pooled(name, head):
    """torchvision.models.<name>(weights=None) with its classifier `head` replaced by Identity."""

    def build():
        model = getattr(torchvision.models, name)(weights=None)
        setattr(model, head, nn.Identity())
        return model

    return build


class PeerName:
    """stdout wrapper that labels the shared peer's JSON lines as this peer's."""

    def __init__(self, out):
        self.out = out

    def write(self, text):
        return self.out.write(text.replace('"peer": "torch_extract_ref"',
                                           '"peer": "torch_backbone_ref"'))

    def flush(self):
        self.out.flush()


def main():
    peer = load_shared_peer(SHARED_PEER)
    for name, (head, size, dim) in BACKBONES.items():
        peer.MODELS[name] = (pooled(name, head), size, IMAGENET_MEAN, IMAGENET_STD, dim)
    sys.stdout = PeerName(sys.stdout)
    peer.main()


if __name__ == "__main__":
    main()
