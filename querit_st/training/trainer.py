"""``train_model``: one listwise soft-label training run with sentence-transformers' ``CrossEncoderTrainer``:
resumable checkpoints, one progress line per logging step, the fast CPU path, LoRA, an atomic final model."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from querit_st.training.distributed import has_cuda
from querit_st.training.fast import configure_fast_training, restore_model
from querit_st.training.objectives import build_loss
from querit_st.training.lora import ADAPTER_DIR, add_lora, fold_lora, save_adapter
from querit_st.training.progress import ProgressLogCallback
from querit_st.utils import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)


def checkpoint_step(folder: Path) -> int:
    """The global step of a ``checkpoint-<step>`` folder (-1 when its name has none)."""
    tail = Path(folder).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def latest_checkpoint(folder: Path) -> Path | None:
    """The ``checkpoint-<step>`` folder with the highest step, or None."""
    ckpts = sorted(folder.glob("checkpoint-*"), key=checkpoint_step)
    return ckpts[-1] if ckpts else None


def freeze_word_embeddings(model: Any) -> int:
    """Stop gradients into the (large, multilingual) word-embedding matrix; returns the frozen parameter count."""
    emb = model.transformers_model.get_input_embeddings()
    n = 0
    for p in emb.parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n


#: Parameter names of the scoring head (BERT's pooler and classifier, XLM-R's classifier.dense / out_proj), for
#: ``TrainSpec.head_learning_rate`` through sentence-transformers' ``learning_rate_mapping`` (regex search).
HEAD_PARAMETERS = r"(^|\.)(classifier|pooler)\."


def _pairs_per_row(dataset: Any) -> float:
    cols = dataset.column_names
    for c in cols:
        v = dataset[0][c]
        if isinstance(v, list) and v and isinstance(v[0], str):
            n = min(len(dataset), 64)
            return sum(len(dataset[i][c]) for i in range(n)) / n
    return 1.0


def train_model(
    model: Any,
    dataset: Any,
    spec: Any,
    output_dir: str | os.PathLike,
    *,
    seed: int = 0,
    resume: bool = True,
    record: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    label: str = "train",
    evaluator: Any | None = None,
    best_metric: str | None = None,
) -> Path:
    """Train ``model`` on a listwise soft-label dataset with ``CrossEncoderTrainer``; save to ``output_dir/model``.

    ``spec`` is a :class:`querit_st.pipeline.config.TrainSpec`. Checkpoints go to ``output_dir/checkpoints`` every
    ``save_steps``; with ``resume`` a killed run continues from the last one. The final model is written atomically
    (with LoRA: folded into plain weights, the adapter + head also kept under ``output_dir/adapter``). Under
    ``torchrun`` / ``accelerate launch`` the run is DDP (HF Trainer); only the main process writes the model and the
    log. ``callbacks`` are extra ``transformers.TrainerCallback`` objects; ``label`` prefixes the progress lines.
    ``evaluator`` (a sentence-transformers evaluator, e.g. on dev lists) runs at every checkpoint; with
    ``best_metric`` (its metric name, e.g. ``"dev_ndcg@10"``) the final model is the best checkpoint by it.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    output_dir = Path(output_dir)
    final = output_dir / "model"
    if final.is_dir() and resume:
        logger.info("%s exists; skipping training", final)
        return final
    ckpt_dir = output_dir / "checkpoints"
    prompt = model.prompts.get(model.default_prompt_name) if model.default_prompt_name else None
    if spec.freeze_embeddings and not spec.lora:
        freeze_word_embeddings(model)
    if spec.lora:
        add_lora(model, r=spec.lora_r)
    tty = sys.stderr.isatty()
    args = CrossEncoderTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        warmup_steps=spec.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=spec.weight_decay,
        logging_steps=spec.logging_steps,
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=2,
        report_to=[],
        seed=seed,
        data_seed=seed,
        bf16=spec.bf16,
        use_cpu=not has_cuda(),
        # every parameter takes part in each step, and the listwise losses run several forward passes (mini-batches)
        # before one backward, which DDP's unused-parameter search rejects
        ddp_find_unused_parameters=False,
        prompts=prompt or None,
        dataloader_drop_last=False,
        disable_tqdm=not tty,
        **({"learning_rate_mapping": {HEAD_PARAMETERS: spec.head_learning_rate}}
           if getattr(spec, "head_learning_rate", None) else {}),
        **({"eval_strategy": "steps", "eval_steps": spec.save_steps} if evaluator is not None else {}),
        **({"load_best_model_at_end": True, "metric_for_best_model": f"eval_{best_metric}", "greater_is_better": True}
           if evaluator is not None and best_metric else {}),
    )
    loss = build_loss(model, spec)
    fast = configure_fast_training(loss, args, getattr(spec, "fast", "auto"))
    progress = ProgressLogCallback(label, pairs_per_step=_pairs_per_row(dataset) * spec.batch_size)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator,
                                  callbacks=[progress, *(callbacks or [])])
    trainer.remove_callback(PrinterCallback)  # raw log dicts: the progress line says it readably
    if not tty:
        trainer.remove_callback(ProgressCallback)
    last = latest_checkpoint(ckpt_dir) if resume else None
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    elapsed = time.perf_counter() - t0
    restore_model(loss)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    entry = {
        **(record or {}),
        "loss": spec.loss,
        "loss_kwargs": spec.loss_kwargs,
        "steps": trainer.state.global_step,
        "resumed_from_step": max(checkpoint_step(last), 0) if last else 0,  # train_seconds covers the steps after it (dev evaluations too)
        "rows": len(dataset),
        "train_seconds": round(elapsed, 1),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "learning_rate": spec.learning_rate,
        "head_learning_rate": getattr(spec, "head_learning_rate", None),
        "batch_size": spec.batch_size,
        "world_size": args.world_size,
        "seed": seed,
        "fast_path": fast.to_dict(),
        "dev": {"metric": best_metric, "best": trainer.state.best_metric,
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "history": [{k: v for k, v in h.items() if k.startswith("eval_") or k == "step"}
                            for h in trainer.state.log_history if any(k.startswith("eval_") for k in h)]}
        if evaluator is not None else None,
        "lora": {"r": spec.lora_r} if spec.lora else None,
    }
    if trainer.is_world_process_zero():
        if spec.lora:
            save_adapter(model, output_dir / ADAPTER_DIR)
            fold_lora(model)
        model.record(stages=entry)
        with atomic_dir(final, overwrite=True) as tmp:
            model.save_pretrained(str(tmp))
        atomic_write_json(output_dir / "train_log.json", {"log_history": trainer.state.log_history, **entry})
    trainer.accelerator.wait_for_everyone()
    return final

