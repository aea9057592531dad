"""The embedder's numeric variants, importable without torch (the command line lists them).

auto     the fastest variant this machine passes the fp32 probe with (models.embedder)
fp32     torch, float32: the reference and the fallback
bf16     torch, bfloat16 weights (CPUs with native bf16)
fp16     torch, float16 (CUDA)
ov-bf16  OpenVINO, bf16 inference precision, throughput mode (CPUs with native bf16)
ov-fp32  OpenVINO, f32
"""

from __future__ import annotations

from typing import Literal, get_args

Variant = Literal["auto", "fp32", "bf16", "fp16", "ov-bf16", "ov-fp32"]
VARIANTS: tuple[str, ...] = get_args(Variant)
