"""Training cost of the defenses: time per step and peak memory, as ratios to prompt tuning.

Every defense trains on the same backbone with the same batch (``--batch-size`` SST-2 train
sentences drawn with seed 0, padded to the longest) for ``--warmup`` untimed steps and then
``--steps`` timed optimizer steps of the shared loop's body (zero_grad → defense step →
clipping → optimizer step). Each defense runs in its own subprocess, so one defense's
allocations never count towards another's peak.

Peak memory is the memory *training* adds on top of the loaded model:

* CUDA: ``torch.cuda.max_memory_allocated`` after the steps minus ``memory_allocated`` before
  them (the allocator's exact figures; the peak is reset before the first step);
* CPU: the process's peak resident set (``VmHWM``) during the steps minus its resident set
  before them. Linux resets ``VmHWM`` to the current RSS when ``5`` is written to
  ``/proc/self/clear_refs``, so the peak of loading the model and data does not hide the
  training peak. (``tracemalloc`` cannot be used: it sees Python's allocator only, not
  torch's tensor memory.) Where ``clear_refs`` is not writable the lifetime peak
  (``ru_maxrss``) is used and the table says so. The CPU figure also holds the one-time
  allocations of the first backward pass (autograd engine, allocator arenas), the same for
  every defense, so CPU ratios understate the differences that the CUDA figures show.

Usage::

    python benchmarks/train_cost.py                       # all-MiniLM-L6-v2, batch 16, 5 steps
    python benchmarks/train_cost.py --model roberta-base --device cuda --mixed-precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

DEFENSES = ("prompt-tuning", "peaft", "finetune", "freelb", "rose")


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"{field}:\s+(\d+) kB", f.read())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(defense: str, args) -> dict:
    """Train ``defense`` for warm-up + timed steps in this process; return its costs."""
    import torch

    from robustbench_nlp.backbones import autocast_dtype_for, enable_gradient_checkpointing, \
        load_backbone, pick_device
    from robustbench_nlp.config import build_config
    from robustbench_nlp.inference import collate, encode
    from robustbench_nlp.registry import DEFENSES as REGISTRY
    from robustbench_nlp.tasks import get_task, load_split
    from robustbench_nlp.training import seed_everything, texts_of

    torch.set_num_threads(args.threads)
    seed_everything(0)
    task = get_task("sst2")
    train_df, _ = load_split(task, "train")
    df = train_df.sample(n=args.batch_size, random_state=0)
    device = pick_device(args.device)
    tok, model, info = load_backbone(args.model, task.num_labels)
    cls = REGISTRY.get(defense)
    overrides = {"mask_warmup_steps": "0"} if defense == "rose" else {}
    d = cls(build_config(cls.Config, overrides))
    d.setup(model, tok, {**info, "task": task, "train_size": len(train_df)})
    model.to(device)
    model.autocast_dtype = autocast_dtype_for(args.mixed_precision, device)
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    rows = encode(tok, texts_of(df, task), args.max_length)
    for r, y in zip(rows, df["label"].tolist()):
        r["label"] = int(y)
    batch = collate(rows, tok.pad_token_id, device)
    opt = d.make_optimizer(model)
    params = [p for g in opt.param_groups for p in g["params"]]
    model.train()

    def one_step():
        opt.zero_grad(set_to_none=True)
        d.step(model, batch)
        torch.nn.utils.clip_grad_norm_(params, d.config.max_grad_norm)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        peak_kind = "CUDA allocator"
    else:
        base = (_rss_kb("VmRSS") or 0) * 1024
        peak_kind = "RSS" if _reset_peak_rss() else "RSS (lifetime peak)"
    for _ in range(args.warmup):
        one_step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
    else:
        hwm = _rss_kb("VmHWM")
        peak = hwm * 1024 if hwm is not None and peak_kind == "RSS" else \
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"defense": defense, "trainable": sum(p.numel() for p in params),
            "step_s": statistics.median(times), "peak_mb": (peak - base) / 2 ** 20,
            "peak_kind": peak_kind, "device": str(device), "model": args.model,
            "seq_len": int(batch["input_ids"].shape[1]),
            "autocast": str(model.autocast_dtype)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm", help="backbone alias, folder or Hub id")
    ap.add_argument("--defenses", default=",".join(DEFENSES),
                    help="comma-separated; the first is the reference of the ratios")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per defense")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--device", default=None)
    ap.add_argument("--mixed-precision", default="no", choices=("auto", "no", "bf16"))
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return 0
    names = [n.strip() for n in args.defenses.split(",") if n.strip()]
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    results = []
    for name in names:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), *passthrough,
                              "--child", name], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = results[0]
    print(f"model {ref['model']} on {ref['device']}, batch {args.batch_size} x "
          f"{ref['seq_len']} tokens, autocast {ref['autocast']}, {args.steps} timed steps "
          f"(median) after {args.warmup} warm-up, {args.threads} threads; peak memory = "
          f"{ref['peak_kind']} peak during training minus before it")
    head = f"{'defense':<14} {'trainable':>12} {'s/step':>8} {'x time':>7} {'peak MB':>9} " \
           f"{'x memory':>9}"
    print(head)
    print("-" * len(head))
    for r in results:
        mem_ratio = r["peak_mb"] / ref["peak_mb"] if ref["peak_mb"] > 0 else float("nan")
        print(f"{r['defense']:<14} {r['trainable']:>12,} {r['step_s']:>8.3f} "
              f"{r['step_s'] / ref['step_s']:>7.2f} {r['peak_mb']:>9.1f} {mem_ratio:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
