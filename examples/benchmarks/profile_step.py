"""Where a training step of the EGHN variants spends its time: a ``torch.profiler`` breakdown.

For each model (``eghn``, ``eghn-published``) and AdK size (Cα: 214 nodes, 10 Å + sequence bonds; backbone: 855
nodes, 8 Å + covalent bonds; MDAnalysisTests PSF/DCD frame 0, batch 1), hidden 128, 4 layers per level, 2 pooling,
2 decoder layers, K = 20 (the sizes of ``model_speed.py``), it profiles ``--steps`` training steps (forward +
MSE loss + backward + AdamW step) after one warm-up step and prints:

* **by op category** (self CPU time of every ATen op, forward and backward together): matrix products
  (``mm``/``addmm``/``bmm``/``linear``…), gather/scatter (``index_select``/``index_add``/``scatter``/``gather``/
  ``index``…), elementwise (arithmetic, activations, ``pow``/``sqrt``, copies, casts), reductions (``sum``/``mean``/
  ``norm``…), other ATen (allocation, views, ``cat``, sorting…) and **Python/dispatch** = wall time − all ATen self
  time (interpreter, module calls, autograd bookkeeping outside ops);
* **by layer type** (forward only: the profiler cannot attribute backward ops to modules): every ATen op of the
  forward is charged to the innermost of the ``EMMP`` / ``AssignHead`` / ``VectorDecoder`` / ``EGNNLayer`` modules
  that ran it (``model (rest)`` = the model's own code between layers), again split by category.

Run single-threaded (``--threads 1``, default) so self times add up to wall time.

Usage: ``nice -n 10 python examples/benchmarks/profile_step.py [--models eghn eghn-published] [--sizes ca bb]
[--steps 3] [--threads 1] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LAYER_TYPES = ("EMMP", "AssignHead", "VectorDecoder", "EGNNLayer")
CATEGORIES = ("matmul", "gather/scatter", "elementwise", "reduction", "other aten", "python/dispatch")
_MATMUL = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "einsum", "addbmm", "mv", "dot", "_addmm_activation")
_GATHER = ("index_select", "index_add", "index_add_", "scatter", "scatter_", "scatter_add", "scatter_add_",
           "scatter_reduce", "scatter_reduce_", "gather", "index", "index_put", "index_put_", "_index_put_impl_",
           "embedding", "segment_reduce", "_segment_reduce_backward", "index_fill_", "masked_select", "take",
           "repeat_interleave", "index_reduce", "_unsafe_index", "_unsafe_index_put", "index_copy_")
_REDUCE = ("sum", "mean", "norm", "linalg_vector_norm", "amax", "max", "min", "cumsum", "prod", "var", "std",
           "_foreach_norm", "logsumexp")
_ELEMENT = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "pow", "sqrt", "rsqrt", "silu",
            "silu_backward", "sigmoid", "sigmoid_backward", "tanh", "relu", "exp", "log", "clamp", "clamp_min",
            "clamp_", "clamp_min_", "where", "addcmul_", "addcdiv_", "lerp_", "copy_", "to", "_to_copy", "fill_",
            "zero_", "abs", "reciprocal", "softmax", "_softmax", "_softmax_backward_data", "threshold_backward",
            "_foreach_add_", "_foreach_mul_", "_foreach_lerp_", "_foreach_addcmul_", "_foreach_addcdiv_",
            "_foreach_sqrt", "_foreach_div_", "_foreach_add", "_foreach_mul", "_foreach_div", "_foreach_sub",
            "sign", "masked_fill", "masked_fill_", "eq", "ne", "gt", "lt", "ge", "le", "square", "mse_loss",
            "mse_loss_backward", "pow_", "sqrt_", "sgn", "erf", "expand_as", "ones_like", "zeros_like")


def category(op: str) -> str:
    name = op.split("::", 1)[-1]
    if name in _MATMUL:
        return "matmul"
    if name in _GATHER:
        return "gather/scatter"
    if name in _ELEMENT:
        return "elementwise"
    if name in _REDUCE:
        return "reduction"
    return "other aten"


def _graph(size: str):
    from model_speed import _adk

    return _adk("name CA", 10.0, 1)[0] if size == "ca" else _adk("backbone", 8.0, 1)[0]


def _label_hooks(model):
    """Forward pre/post hooks that open a ``layer:<Type>`` profiler range around every layer of LAYER_TYPES."""
    import torch

    handles = []
    for mod in model.modules():
        kind = type(mod).__name__
        if kind not in LAYER_TYPES:
            continue

        def pre(m, args, _kind=kind):
            m._prof_range = torch.autograd.profiler.record_function(f"layer:{_kind}")
            m._prof_range.__enter__()

        def post(m, args, out):
            m._prof_range.__exit__(None, None, None)

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    return handles


def _aten_events(prof):
    """(self_us, op name, innermost layer label or None, in forward?) of every ATen op."""
    out = []
    for ev in prof.events():
        if not ev.name.startswith("aten::"):
            continue
        layer, fwd, p = None, False, ev.cpu_parent
        while p is not None:
            if layer is None and p.name.startswith("layer:"):
                layer = p.name[len("layer:"):]
            if p.name == "step:forward":
                fwd = True
            p = p.cpu_parent
        out.append((ev.self_cpu_time_total, ev.name, layer, fwd))
    return out


def profile(model_name: str, size: str, steps: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile, record_function

    from eghn_md.models import ModelConfig, build_model
    from eghn_md.train.objective import Objective
    from eghn_md.train.options import TrainConfig

    torch.manual_seed(0)
    g = _graph(size)
    cfg = ModelConfig(name=model_name, node_in=g.h.shape[1], hidden=128, n_layers=4, n_pool_layers=2,
                      n_decoder_layers=2, n_clusters=20, length_scale=3.8, vel_scale=1.0, disp_scale=1.0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    objective = Objective(config=TrainConfig(reg_weight=1.0))  # the one-step training loss: MSE + λ·reg
    totals = objective.totals([g])

    def step():
        opt.zero_grad(set_to_none=True)
        with record_function("step:forward"):
            loss, _ = objective(model, g, totals)
        with record_function("step:backward"):
            loss.backward()
        with record_function("step:optimiser"):
            opt.step()

    step()
    handles = _label_hooks(model)
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall_us = (time.perf_counter() - t0) * 1e6
    for h in handles:
        h.remove()
    return _summarise(prof, wall_us, steps, model_name, size, g)


def _summarise(prof, wall_us: float, steps: int, model_name: str, size: str, g) -> dict:
    cats, layers, fwd_us = defaultdict(float), defaultdict(lambda: defaultdict(float)), 0.0
    for us, name, layer, fwd in _aten_events(prof):
        c = category(name)
        cats[c] += us
        if fwd:
            fwd_us += us
            layers[layer or "model (rest)"][c] += us
    aten = sum(cats.values())
    cats["python/dispatch"] = max(wall_us - aten, 0.0)
    top = defaultdict(float)
    for us, name, _, _ in _aten_events(prof):
        top[name] += us
    return {
        "model": model_name, "size": size, "nodes": g.num_nodes, "edges": int(g.edge_index.shape[1]),
        "step_ms": wall_us / steps / 1e3,
        "share": {c: cats[c] / wall_us for c in CATEGORIES},
        "forward_aten_ms": fwd_us / steps / 1e3,
        "layers_ms": {k: {c: v / steps / 1e3 for c, v in d.items()} for k, d in layers.items()},
        "top_ops_ms": {k: v / steps / 1e3 for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:12]},
    }


def _print(res: dict) -> None:
    print(f"\n### {res['model']}, {res['size']} ({res['nodes']} nodes, {res['edges']} edges): "
          f"{res['step_ms']:.0f} ms per train step")
    print("| " + " | ".join(CATEGORIES) + " |\n|" + "---:|" * len(CATEGORIES))
    print("| " + " | ".join(f"{100 * res['share'][c]:.0f} %" for c in CATEGORIES) + " |")
    print(f"\nforward, by layer type (ATen self time, ms per step; forward total {res['forward_aten_ms']:.0f} ms):\n")
    cols = CATEGORIES[:-1]
    print("| layer | total | " + " | ".join(cols) + " |\n|---|" + "---:|" * (len(cols) + 1))
    for layer, d in sorted(res["layers_ms"].items(), key=lambda kv: -sum(kv[1].values())):
        print(f"| {layer} | {sum(d.values()):.1f} | " + " | ".join(f"{d.get(c, 0.0):.1f}" for c in cols) + " |")
    print("\ntop ATen ops (self ms per step, forward + backward + optimiser): "
          + ", ".join(f"{k.split('::')[-1]} {v:.1f}" for k, v in res["top_ops_ms"].items()))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["eghn", "eghn-published"], choices=["eghn", "eghn-published", "egnn"])
    p.add_argument("--sizes", nargs="+", default=["ca", "bb"], choices=["ca", "bb"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    results = [profile(m, s, a.steps) for s in a.sizes for m in a.models]
    if a.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"torch {torch.__version__}, {a.threads} thread(s), {a.steps} profiled steps after 1 warm-up")
        for r in results:
            _print(r)


if __name__ == "__main__":
    main()
