"""Adam and AdamW as every fit here builds them: torch's own, fused.

Why fused: torch's unfused Adam takes the square root of its second moment with `Tensor.sqrt`, and
on the CPU torch computes a float tensor's sqrt with MKL's vector math (VML). The kernel MKL runs
for it under the pin (MKL_CBWR=COMPATIBLE, on Intel and AMD CPUs alike: `mkl_vml_kernel_sSqrt_EX…`)
starts from the SSE instruction `rsqrtps`, an approximation whose bits the x86 manuals leave to the
silicon (Intel's and AMD's differ), and refines it without a final correction: 16 % of float32
square roots it returns here are not the correctly rounded ones. So every Adam step, and every
weight after it, depended on the CPU's vendor: the README's published fits, made on an Intel Xeon,
never reproduced on an AMD EPYC under the same pins. torch's fused kernel computes the square root
with the processor's square-root instruction (`vsqrtps`), which IEEE 754 defines to the bit (one
answer on every CPU). tests/test_pinning.py checks that the fused step is the unfused one with
correctly rounded roots (and torch's own sqrt is not correctly rounded), and that no fit runs a
torch op whose MKL kernel reads an approximate instruction (VML_APPROXIMATE). `RECIPE` is part of
every cached fit's key: a fit of the unfused recipe is never reused."""
from __future__ import annotations

RECIPE = "adam-fused"
# torch ops whose float32 kernels may be MKL VML's and whose VML kernels (the COMPATIBLE branch's
# `EX…` ones, read with objdump in torch 2.14.1's MKL 2024.0) start from rcpps/rsqrtps: no fit may
# run them (in float64, MKL's log is such a kernel too; no fit computes in float64)
VML_APPROXIMATE = ("sqrt", "acos", "asin", "atan", "tan", "log10", "log2")
UNFUSED = "unfused-adam"  # what a fit recorded before records named their recipe ran


def recipe_of(pinning: dict | None) -> str | None:
    """The optimizer recipe a record's fit ran (its `pinning.fit.optimizer`): a fit recorded
    before records named one ran torch's unfused Adam; None for a record with no pinned fit."""
    fit = (pinning or {}).get("fit")
    return fit.get("optimizer", UNFUSED) if isinstance(fit, dict) and fit else None


# What a record made before records named their recipes (`RunRecord.recipes`) stood on: every fused
# fit among them was made on the pool backbone's recipe 3 and the trunk's recipe 1 (both set on
# 2026-11-26, before the first fused fit of 12-06); an unfused one is another recipe whatever its
# networks were, so its versions are not guessed.
FUSED_BEFORE_RECIPES = {"backbone": 3, "trunk": 1}


def recipes_of(recipes: dict | None, pinning: dict | None) -> dict | None:
    """The recipes of what a record's fit trained and stood on ({"optimizer", "backbone", "trunk"}:
    bench/harness/runner.py trained_networks_recipes): its `recipes` field, else what a record made
    before the field held (above); None for a record with no pinned fit."""
    if recipes:
        return dict(recipes)
    optimizer = recipe_of(pinning)
    if optimizer is None:
        return None
    return {"optimizer": optimizer, **(FUSED_BEFORE_RECIPES if optimizer == RECIPE else {})}


def recipe_label(recipes: dict) -> str:
    """'adam-fused, backbone 3, trunk 1' (`recipes_of`'s dict in words; 'unfused-adam' alone for an
    older record whose networks' recipes are not known)."""
    rest = ", ".join(f"{k} {v}" for k, v in sorted(recipes.items()) if k != "optimizer")
    return ", ".join(filter(None, [str(recipes.get("optimizer", "no optimizer recorded")), rest]))


def adam(params, *, decoupled: bool = False, **settings):
    """torch.optim.AdamW (`decoupled` weight decay) or Adam over `params` with `settings` (lr,
    weight_decay, ...), fused: the same update, its square root exact on every CPU (above)."""
    import torch

    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    return kind(params, fused=True, **settings)
