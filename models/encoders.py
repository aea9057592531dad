"""The two engines that turn padded token batches into pooled sentence vectors.

    engine = TorchEngine(sentence_transformer)                # fp32 / bf16 / fp16 (CUDA)
    engine = OpenVINOEngine(sentence_transformer, "bf16")     # CPU, OpenVINO throughput mode
    engine.run(batches, on_batch)   # batches: [(input_ids int64 (b, L), mask int64 (b, L))]

Both return the mean-pooled last hidden state (what all-MiniLM-L6-v2's Pooling module does),
not normalised; ``models.embedder.Embedder`` tokenises, sorts, batches and normalises.
``on_batch(i, vectors)`` receives float32 (b, dim) for batch ``i``; OpenVINO may finish
batches out of order, so callers place results by index.

Why OpenVINO on CPU: measured on our 2-core AMD EPYC (AVX512-BF16, no AMX), its bf16 graph
with mean pooling inside, two streams of one thread each and batches of 16 sorted by length
ran ~2.6x plain fp32 sentence-transformers, at cosine 0.99998 to fp32 (bench/embedder.py).
The torch graph is converted in memory at start-up (~1.5 s here); nothing is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.machine import available_cpus

TokenBatch = tuple[np.ndarray, np.ndarray]
"""(input_ids int64 (b, L), attention_mask int64 (b, L)), right-padded."""
OnBatch = Callable[[int, np.ndarray], None]


class TorchEngine:
    """The sentence-transformers module chain, run on padded batches in inference mode."""

    concurrent_calls = 1
    """Calls worth running at once: one, as torch's threads already take every core."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def run(self, batches: Sequence[TokenBatch], on_batch: OnBatch) -> None:
        import torch

        device = self._model.device
        with torch.inference_mode():
            for i, (ids, mask) in enumerate(batches):
                features = {
                    "input_ids": torch.from_numpy(ids).to(device),
                    "attention_mask": torch.from_numpy(mask).to(device),
                }
                pooled = self._model(features)["sentence_embedding"]
                on_batch(i, pooled.float().cpu().numpy())


def mean_pooling_only(model: Any) -> bool:
    """True when ``model`` (a SentenceTransformer) is Transformer -> mean Pooling [-> Normalize],
    the chain the OpenVINO graph reproduces; anything else stays on torch."""
    names = [type(module).__name__ for module in model]
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        return False
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode_mean_tokens", None)
    if mode is None:
        mode = getattr(pooling, "pooling_mode", None) in ("mean", ("mean",), ["mean"])
    return bool(mode)


class OpenVINOEngine:
    """The transformer plus mean pooling as one OpenVINO graph, compiled for throughput.

    ``precision`` is OpenVINO's inference precision: ``bf16`` (native on AVX512-BF16/AMX
    CPUs; elsewhere OpenVINO computes it in fp32) or ``f32``.
    """

    concurrent_calls = 2
    """Calls worth running at once (``run`` is thread-safe: each call has its own queue of
    requests, and the streams take the requests of both). What it is for: in the stream
    worker, while one batch ends on one stream and the event loop stores and sends, the
    next batch keeps the other core busy (``bench.throughput`` measures the worker both ways
    each run: "pipeline / one batch at a time"). Calls made one after the other, as in a
    training run, have no such gap to fill."""

    def __init__(self, model: Any, precision: str, *, threads: int) -> None:
        import openvino as ov
        import torch

        class _Pooled(torch.nn.Module):
            def __init__(self, encoder: Any) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                hidden = self.encoder(
                    input_ids=input_ids, attention_mask=attention_mask
                ).last_hidden_state
                weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
                return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

        module = _Pooled(model[0].auto_model).eval()
        example = {
            "input_ids": torch.ones((2, 8), dtype=torch.int64),
            "attention_mask": torch.ones((2, 8), dtype=torch.int64),
        }
        dynamic = ov.PartialShape([-1, -1])  # (batch, tokens)
        inputs = [(name, dynamic, ov.Type.i64) for name in ("input_ids", "attention_mask")]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes: expected, noise
            graph = ov.convert_model(module, example_input=example, input=inputs)
        # Two streams of one thread each kept both cores busy (one stream of two threads lost
        # ~10% to synchronisation on this 2-core machine); more cores get more streams.
        streams = max(1, threads)
        # OpenVINO pins its threads to cores, the same first cores in every process: two
        # workers of one thread each on two cores ran 11 + 12 texts/s pinned and 23 + 24 not
        # (2026-12-01). Pin only a process that has every core to itself.
        owns_the_cpu = threads >= available_cpus()
        self._compiled = ov.Core().compile_model(
            graph,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": precision,
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": str(streams),
                "INFERENCE_NUM_THREADS": str(threads),
                "ENABLE_CPU_PINNING": "YES" if owns_the_cpu else "NO",
            },
        )
        self._jobs = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.precision = str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))

    def run(self, batches: Sequence[TokenBatch], on_batch: OnBatch) -> None:
        import openvino as ov

        queue = ov.AsyncInferQueue(self._compiled, self._jobs)
        failures: list[BaseException] = []

        def done(request: Any, index: int) -> None:
            try:
                on_batch(index, np.array(request.get_output_tensor(0).data, dtype=np.float32))
            except BaseException as exc:  # surfaced after wait_all, not lost in a thread
                failures.append(exc)

        queue.set_callback(done)
        for i, (ids, mask) in enumerate(batches):
            queue.start_async({"input_ids": ids, "attention_mask": mask}, i)
        queue.wait_all()
        if failures:
            raise failures[0]
