#!/usr/bin/env python3
"""The temporal peer (../shared/peers/torch_temporal_ref.py) with the phases of its steps timed.

What it does: imports the peer by path, replaces its `run_epoch` with the same loop timed phase
by phase (scripts/bench/phases.py: gather = the batcher's next segment and the carried state,
forward, loss, backward = zero_grad and backward, update = the optimizer's step; inference:
gather, forward, and no outputs phase, as the peer writes no probabilities), runs the peer's own
`main()` with the command line given, and prints the peer's JSON object with two more keys,
`train_phases_ms` and `infer_phases_ms` (mean milliseconds per timed step), the keys of
`temporal bench`. The model, data, optimizer, warm-up, step caps and frames/s are the peer's.

What it does not: change the peer's file or its numbers beyond the cost of the clock reads
(a few microseconds a step). `scripts/bench-temporal.sh` runs it instead of the peer with
PHASES=1.

    PY=$(bash scripts/fixtures/venv.sh)
    $PY scripts/bench/torch_temporal_phases.py [--peer PATH] --arch lstm --topology feedback --max-steps 1
"""
import importlib.util
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from phases import Phases  # noqa: E402

DEFAULT_PEER = os.path.join(HERE, "..", "..", "..", "shared", "peers", "torch_temporal_ref.py")


def load_peer(argv):
    path = DEFAULT_PEER
    if "--peer" in argv:
        i = argv.index("--peer")
        path = argv[i + 1]
        del argv[i:i + 2]
    spec = importlib.util.spec_from_file_location("torch_temporal_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    argv = sys.argv[1:]
    peer = load_peer(argv)
    timed = {"train": Phases(), "infer": Phases()}

    def run_epoch(model, opt, batcher, train, max_steps=None, warmup=0):
        """The peer's run_epoch, step for step, with laps between its phases."""
        model.train(train)
        states = None
        frames, t0 = 0, None
        ph = Phases()
        ctx = torch.enable_grad() if train else torch.inference_mode()
        it = iter(batcher)
        step = 0
        with ctx:
            while True:
                began = time.perf_counter()
                ph.start(began)
                try:
                    x, labels, valid, reset = next(it)
                except StopIteration:
                    break
                if step == warmup:
                    t0 = time.perf_counter()
                    frames = 0
                    ph = timed["train" if train else "infer"]
                    ph.start(began)
                if states is not None:
                    states = peer.carry(model, states, reset)
                pad = ~valid if not model.recurrent else None
                ph.lap("gather")
                out, new_states = model(x, pad, states)
                ph.lap("forward")
                if train:
                    loss, _ = peer.mtl_loss(out, labels, valid)
                    loss.item()
                    ph.lap("loss")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    ph.lap("backward")
                    opt.step()
                    ph.lap("update")
                states = new_states if model.recurrent else None
                frames += int(valid.sum())
                ph.step_done()
                step += 1
                if max_steps is not None and step >= warmup + max_steps:
                    break
        dt = time.perf_counter() - t0
        return frames, dt, step - warmup

    def emit(text, *args, **kwargs):
        out = json.loads(text)
        out["train_phases_ms"] = timed["train"].mean_ms()
        out["infer_phases_ms"] = timed["infer"].mean_ms()
        sys.stdout.write(json.dumps(out) + "\n")

    peer.run_epoch = run_epoch
    peer.print = emit
    sys.argv = [sys.argv[0]] + argv
    peer.main()


if __name__ == "__main__":
    main()
