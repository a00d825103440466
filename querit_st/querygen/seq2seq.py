"""``Seq2SeqQueryGenerator``: queries from a local transformers model (doc2query-T5 style or an instruction-tuned
chat model asked to write the query in the document's language)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from querit_st.querygen.base import CorpusStats, QueryGenerator
from querit_st.utils import QueritInputError

DEFAULT_SEQ2SEQ_PROMPT = "Generate a search query for this passage: {doc}"
DEFAULT_CHAT_PROMPT = (
    "Write one short search query that the following document answers. Write the query in the same language as "
    "the document. Reply with the query only.\n\nDocument: {doc}"
)


class Seq2SeqQueryGenerator(QueryGenerator):
    """Queries from a transformers model: doc2query-T5 style or an instruction-tuned chat model.

    Args:
        model_name_or_path: a local folder (or hub name, offline only from the local cache). Encoder-decoder
            configs load with ``AutoModelForSeq2SeqLM``; others with ``AutoModelForCausalLM`` and are prompted
            through ``tokenizer.apply_chat_template`` when the tokenizer has a chat template.
        prompt: format string with ``{doc}``. ``None``: ``"Generate a search query for this passage: {doc}"`` for
            seq2seq models, an instruction to answer with a query in the document's language for chat models.
        max_new_tokens, num_return_sequences, do_sample, temperature, top_p, top_k: ``model.generate`` settings
            (``generate(..., num_queries_per_doc=n)`` asks for at least ``n`` sequences per document).
        batch_size: documents per ``generate`` call.
        max_doc_chars: documents are cut to this many characters before prompting.
        seed: sampling is seeded per batch (``seed + batch index``) inside a forked torch RNG, so runs repeat.
        filter: apply :class:`QueryFilter` (pass ``filter=False`` to ``generate`` to see raw generations).
        generation_kwargs: extra ``model.generate`` arguments.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        prompt: str | None = None,
        max_new_tokens: int = 32,
        num_return_sequences: int = 1,
        do_sample: bool = True,
        *,
        temperature: float = 1.0,
        top_p: float | None = 0.95,
        top_k: int | None = None,
        batch_size: int = 8,
        max_doc_chars: int = 2000,
        seed: int = 0,
        language: str | None = None,
        filter: bool = True,
        device: str | None = None,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        if not isinstance(model_name_or_path, (str, os.PathLike)) or not str(model_name_or_path).strip():
            raise QueritInputError(
                f"model_name_or_path must be a model folder or name, got {model_name_or_path!r:.80}"
            )
        self.name = str(model_name_or_path)
        config = AutoConfig.from_pretrained(self.name)
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.tokenizer = AutoTokenizer.from_pretrained(self.name)
        if self.is_seq2seq:
            self.model = AutoModelForSeq2SeqLM.from_pretrained(self.name)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(self.name)
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = torch.device(device) if device else torch.device("cpu")
        self.model.to(self.device).eval()
        self.use_chat_template = not self.is_seq2seq and bool(getattr(self.tokenizer, "chat_template", None))
        if prompt is None:
            prompt = DEFAULT_SEQ2SEQ_PROMPT if self.is_seq2seq else DEFAULT_CHAT_PROMPT
        if "{doc}" not in prompt:
            raise QueritInputError(f"prompt must contain '{{doc}}', got {prompt!r}")
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.num_return_sequences = num_return_sequences
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.batch_size = batch_size
        self.max_doc_chars = max_doc_chars
        self.seed = int(seed)
        self.language = language
        self.filter = filter
        self.generation_kwargs = dict(generation_kwargs or {})

    def config(self) -> dict[str, Any]:
        return {"type": "seq2seq", "model": self.name, "prompt": self.prompt, "max_new_tokens": self.max_new_tokens,
                "num_return_sequences": self.num_return_sequences, "do_sample": self.do_sample,
                "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed,
                "filter": self.filter}

    def format_prompt(self, doc: str) -> str:
        text = self.prompt.replace("{doc}", doc[: self.max_doc_chars])
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text

    @staticmethod
    def clean(text: str) -> str:
        """First non-empty line, without a leading ``Query:`` label or surrounding quotes."""
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return ""
        line = re.sub(r"^(search\s+)?query\s*[:：]\s*", "", lines[0], flags=re.IGNORECASE)
        return line.strip().strip("\"'“”«»「」").strip()

    def generate_raw(self, docs: Sequence[str], num_return_sequences: int | None = None) -> list[list[str]]:
        """``num_return_sequences`` cleaned generations per document (unfiltered)."""
        import torch

        k = num_return_sequences or self.num_return_sequences
        out: list[list[str]] = []
        for b, start in enumerate(range(0, len(docs), self.batch_size)):
            batch = [self.format_prompt(d) for d in docs[start : start + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=self.is_seq2seq,
                                 max_length=512 if self.is_seq2seq else None)
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            kwargs: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "num_return_sequences": k,
                "do_sample": self.do_sample,
                "pad_token_id": self.tokenizer.pad_token_id,
            }
            if self.do_sample:
                kwargs["temperature"] = self.temperature
                if self.top_p is not None:
                    kwargs["top_p"] = self.top_p
                if self.top_k is not None:
                    kwargs["top_k"] = self.top_k
            elif k > 1:  # several greedy sequences need beams
                kwargs["num_beams"] = k
            kwargs.update(self.generation_kwargs)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(self.seed + b)
                ids = self.model.generate(**enc, **kwargs)
            if not self.is_seq2seq:
                ids = ids[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            for i in range(len(batch)):
                out.append([self.clean(t) for t in texts[i * k : (i + 1) * k]])
        return out

    def _candidates(self, docs: list[tuple[str, str]], stats: CorpusStats, n: int) -> list[list[str]]:
        # at least as many sequences as queries wanted per document (more leave room for the filter)
        return self.generate_raw([t for _, t in docs], max(self.num_return_sequences, n))
