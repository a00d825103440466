"""The ``"packed"`` forward: :class:`PackedBertScorer`, an exact fp32 rewrite of a BERT sequence classifier for
scoring (padding dropped before every linear layer, fused Q/K/V, a ``[CLS]``-only last layer), and
:func:`supports_packing`, which says whether a model can use it. The ONNX and OpenVINO modes export this forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from querit_st.utils import QueritInputError

__all__ = ["PackedBertScorer", "supports_packing"]


def supports_packing(hf_model: nn.Module) -> bool:
    """Whether :class:`PackedBertScorer` can stand in for ``hf_model`` (BERT-style classifier, absolute positions)."""
    cfg = getattr(hf_model, "config", None)
    bert = getattr(hf_model, "bert", None)
    if cfg is None or bert is None or not isinstance(getattr(hf_model, "classifier", None), nn.Linear):
        return False
    if getattr(cfg, "position_embedding_type", "absolute") not in (None, "absolute"):
        return False
    if getattr(cfg, "is_decoder", False) or getattr(bert, "pooler", None) is None:
        return False
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    if not layers:
        return False
    try:
        layer = layers[0]
        needed = (
            layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
            layer.attention.output.dense, layer.attention.output.LayerNorm,
            layer.intermediate.dense, layer.output.dense, layer.output.LayerNorm,
        )
    except AttributeError:
        return False
    return all(isinstance(m, (nn.Linear, nn.LayerNorm)) for m in needed)


class _PackedLayer(nn.Module):
    def __init__(self, layer: nn.Module, last: bool) -> None:
        super().__init__()
        sa = layer.attention.self
        q, k, v = sa.query, sa.key, sa.value
        # One matmul for Q, K and V; the last layer ([CLS]-only queries) needs K/V for all tokens, Q for [CLS].
        parts = (k, v) if last else (q, k, v)
        fused = nn.Linear(q.in_features, sum(m.out_features for m in parts))
        with torch.no_grad():
            fused.weight.copy_(torch.cat([m.weight for m in parts], 0))
            fused.bias.copy_(torch.cat([m.bias for m in parts], 0))
        if last:
            self.kv, self.q_cls = fused, q
        else:
            self.qkv = fused
        self.num_heads = sa.num_attention_heads
        self.head_size = sa.attention_head_size
        self.scaling = float(getattr(sa, "scaling", self.head_size**-0.5))
        self.attn_out = layer.attention.output.dense
        self.ln_attn = layer.attention.output.LayerNorm
        self.ffn_in = layer.intermediate.dense
        self.act = layer.intermediate.intermediate_act_fn
        self.ffn_out = layer.output.dense
        self.ln_out = layer.output.LayerNorm


class PackedBertScorer(nn.Module):
    """Padding-free, score-only forward of a BERT sequence classifier (drop-in for ``transformer.model``).

    Takes the padded ``input_ids`` / ``attention_mask`` / ``token_type_ids`` that sentence-transformers builds,
    drops the padding before every linear layer (the matmuls see ``[real tokens, hidden]``), re-pads only for the
    attention product, and in the last layer runs attention output and feed-forward for the ``[CLS]`` token only.
    Returns ``{"logits": [batch, num_labels]}``; the result equals the Hugging Face forward up to float rounding.
    """

    def __init__(self, hf_model: nn.Module, *, pack: bool = True) -> None:
        super().__init__()
        if not supports_packing(hf_model):
            raise QueritInputError(f"{type(hf_model).__name__} is not a BERT-style sequence classifier")
        self.config = hf_model.config
        bert = hf_model.bert
        emb = bert.embeddings
        self.word_embeddings = emb.word_embeddings
        self.position_embeddings = emb.position_embeddings
        self.token_type_embeddings = emb.token_type_embeddings
        self.ln_emb = emb.LayerNorm
        n = len(bert.encoder.layer)
        self.layers = nn.ModuleList(_PackedLayer(layer, i == n - 1) for i, layer in enumerate(bert.encoder.layer))
        self.pooler = bert.pooler.dense
        self.pooler_act = bert.pooler.activation
        self.classifier = hf_model.classifier
        self.exporting = False
        #: drop padding before the linear layers (True) or keep the padded ``[batch * length]`` rows (False: no
        #: gather / scatter per layer, a simpler graph for compilers; the last layer is [CLS]-only either way)
        self.pack = pack
        self.eval()

    def _linear(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.exporting:  # MatMul + Add in ONNX (ORT's dynamic int8 quantises MatMul, not Gemm)
            return torch.matmul(x, module.weight.t()) + module.bias
        return module(x)

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
        if bias.dtype != q.dtype:
            bias = bias.to(q.dtype)
        if self.exporting:  # plain ops: SDPA exports with NaN guards that cost time in ORT
            return torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale + bias, dim=-1) @ v
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

    # sentence-transformers reads ``model.config`` and calls ``model(**features)``; nothing else is needed.
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        return {"logits": self.score(input_ids, attention_mask, token_type_ids, position_ids)}

    def score(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The logits ``[batch, num_labels]``. ``inputs_embeds`` (``[batch, length, hidden]``: the word-embedding
        rows of the tokens) stands in for ``input_ids``: the exported graphs take it, so the large vocabulary matrix
        stays out of them (looked up once in torch instead of copied into every runtime)."""
        given = inputs_embeds if inputs_embeds is not None else input_ids
        if given is None:
            raise QueritInputError("score needs input_ids or inputs_embeds")
        b, length = given.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(b, length, dtype=torch.long, device=given.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(b, length, dtype=torch.long, device=given.device)
        if position_ids is None:  # 0 at each sequence's first real token: arange for right padding (as HF), and
            # also right for left padding (where HF's BERT would shift positions and pool a pad token)
            position_ids = (torch.cumsum((attention_mask > 0).long(), 1) - 1).clamp(min=0)
        real = attention_mask > 0
        # additive key mask [B, 1, 1, L]: 0 for real tokens, a large negative number for padding
        bias = ((~real).to(self.ln_emb.weight.dtype) * -1e9).reshape(b, 1, 1, length)
        if self.pack:
            flat = real.reshape(-1)
            keep = torch.nonzero(flat).squeeze(1)  # [T] flat indices of real tokens (row-major)
            # for re-padding by one gather: each padded position reads a real row (its own, or for a padding position
            # the previous real token: any finite value works, padding keys are masked and padding queries dropped)
            spread = (torch.cumsum(flat.long(), 0) - 1).clamp(min=0)
            lengths = real.sum(1)
            starts = torch.cumsum(lengths, 0) - lengths  # packed row of each sequence's first real token ([CLS])
            types, pos = (t.reshape(-1)[keep] for t in (token_type_ids, position_ids))
        else:  # every row of the padded batch; [CLS] is each sequence's first real token
            keep = None
            starts = torch.arange(b, device=attention_mask.device) * length + torch.argmax(real.to(torch.int32), 1)
            types, pos = token_type_ids.reshape(-1), position_ids.reshape(-1)
        if inputs_embeds is not None:
            words = inputs_embeds.reshape(b * length, -1)
            words = words if keep is None else words[keep]
        else:
            ids = input_ids.reshape(-1)
            words = self.word_embeddings(ids if keep is None else ids[keep])

        x = words + self.token_type_embeddings(types) + self.position_embeddings(pos)
        x = self.ln_emb(x)
        n_layers = len(self.layers)
        lin = self._linear

        def unpack(t: torch.Tensor) -> torch.Tensor:  # [T, C] -> [B * L, C]
            return t if keep is None else t[spread]

        for i, layer in enumerate(self.layers):
            nh, hs = layer.num_heads, layer.head_size
            width = nh * hs
            if i < n_layers - 1:
                qkv = unpack(lin(layer.qkv, x))
                q, k, v = qkv.view(b, length, 3, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
                ctx = self._attention(q, k, v, bias, layer.scaling)
                ctx = ctx.transpose(1, 2).reshape(b * length, width)
                if keep is not None:
                    ctx = ctx[keep]
                h = layer.ln_attn(lin(layer.attn_out, ctx) + x)
                x = layer.ln_out(lin(layer.ffn_out, layer.act(lin(layer.ffn_in, h))) + h)
            else:
                kv = unpack(lin(layer.kv, x))
                k, v = kv.view(b, length, 2, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
                x_cls = x[starts]  # [B, H]
                q = lin(layer.q_cls, x_cls).view(b, nh, 1, hs)
                ctx = self._attention(q, k, v, bias, layer.scaling).reshape(b, width)
                h = layer.ln_attn(lin(layer.attn_out, ctx) + x_cls)
                x = layer.ln_out(lin(layer.ffn_out, layer.act(lin(layer.ffn_in, h))) + h)
        pooled = self.pooler_act(self.pooler(x))
        return self.classifier(pooled)
