"""A transformer encoder fine-tuned end to end: paper text -> category probabilities.

    head = FinetunedEncoderHead.load(bundle_dir, "category", device="cpu")
    P = head.predict_texts(texts)        # float32 (n, len(head.classes)), rows sum to 1

In a bundle (head kind ``finetuned-encoder``; trained by training.finetune):
    category.json    format, kind, classes (the model's label order), max_length, base_model
    category/        the Hugging Face model and tokenizer as ``save_pretrained`` writes them:
                     config.json, model.safetensors, tokenizer.json, tokenizer_config.json, ...
Loading reads safetensors only (never pickle) and runs no remote code. Texts are
tokenized, truncated to ``max_length`` tokens, batched by length (less padding) and run under
``torch.inference_mode()``; on CUDA in fp16, elsewhere in fp32. Results come back in input order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.errors import ModelFormatError
from models.bundle import FINETUNED_KIND
from models.device import available_cpus
from models.heads import HEAD_FORMAT, read_head_config


class FinetunedEncoderHead:
    """A sequence-classification transformer and its tokenizer, ready to predict."""

    kind: ClassVar[str] = FINETUNED_KIND

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        classes: list[str],
        *,
        max_length: int,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        if model.config.num_labels != len(classes):
            raise ModelFormatError(
                f"fine-tuned encoder has {model.config.num_labels} outputs, {len(classes)} classes"
            )
        self.classes = classes
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        import torch  # here, not at import: a bundle without this head never needs torch

        if device == "cpu":
            torch.set_num_threads(available_cpus())
        # fp16 halves memory and time on a GPU; on CPU fp16 matmuls are slow or unsupported
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self.model = model.to(device=device, dtype=dtype).eval()

    @classmethod
    def load(
        cls, directory: Path, name: str, *, device: str = "cpu", batch_size: int = 32
    ) -> FinetunedEncoderHead:
        """Read ``<directory>/<name>.json`` and the model in ``<directory>/<name>/``."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        config_path, model_dir = directory / f"{name}.json", directory / name
        if not config_path.is_file() or not (model_dir / "model.safetensors").is_file():
            raise ModelFormatError(
                f"head {name!r} incomplete in {directory}: need {name}.json and "
                f"{name}/model.safetensors"
            )
        config = read_head_config(config_path, FINETUNED_KIND)
        try:
            with _no_progress_bars():
                model = AutoModelForSequenceClassification.from_pretrained(
                    model_dir, use_safetensors=True, trust_remote_code=False
                )
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelFormatError(
                f"cannot load the fine-tuned encoder in {model_dir}: {exc}"
            ) from exc
        return cls(
            model,
            tokenizer,
            list(config["classes"]),
            max_length=int(config["max_length"]),
            device=device,
            batch_size=batch_size,
        )

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Category probabilities, float32 (n, len(classes)), in input order."""
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        rows = [{k: v[i] for k, v in encoded.items()} for i in range(len(texts))]
        order = np.argsort([-len(row["input_ids"]) for row in rows], kind="stable")
        import torch

        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer.pad([rows[i] for i in idx], return_tensors="pt")
                logits = self.model(**batch.to(self.device)).logits
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out


def save_finetuned(
    directory: Path,
    name: str,
    model: Any,
    tokenizer: Any,
    classes: list[str],
    *,
    max_length: int,
    base_model: str,
) -> None:
    """Write ``<name>.json`` and ``<name>/`` (model + tokenizer) as ``load`` reads them."""
    target = directory / name
    model.config.id2label = dict(enumerate(classes))  # so the directory describes itself
    model.config.label2id = {label: i for i, label in enumerate(classes)}
    with _no_progress_bars():
        model.save_pretrained(target)  # safetensors: transformers 5 writes no other format
    tokenizer.save_pretrained(target)
    config = {
        "format": HEAD_FORMAT,
        "kind": FINETUNED_KIND,
        "classes": classes,
        "max_length": max_length,
        "base_model": base_model,
    }
    (directory / f"{name}.json").write_text(json.dumps(config, indent=1, ensure_ascii=False))
    # safetensors writes 0600 files; give every file the umask's mode (as config.json got)
    # so a worker running as another user can read the bundle
    mode = (target / "config.json").stat().st_mode & 0o777
    for path in target.iterdir():
        os.chmod(path, mode)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Hide the "Loading weights" / "Writing model shards" bars: noise in a worker's log."""
    import transformers.utils.logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()
