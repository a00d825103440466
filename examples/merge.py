"""SLERP-merge cross-encoder checkpoints with querit_st.merge.

Merge your own checkpoints (same as ``querit-st merge``)::

    python examples/merge.py path/to/ce_general path/to/ce_adapted --t 0.5 --output merged_ce
    python examples/merge.py ce_a ce_b --t-list 0,0.5,1 --parameter-t classifier=0.3 --output merged_ce
    python examples/merge.py ce_a ce_b ce_c --weights 2,1,1 --output merged_ce

Without arguments it runs an offline demo: it builds three tiny BERT cross-encoders that were "fine-tuned"
differently (a few optimizer steps on random labels), merges them several ways and prints the scores each model
gives a few query-document pairs. It takes a few seconds on a CPU.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PAIRS = [
    ("w1 w2 w3", "w3 w4 a b c"),
    ("a b", "w7 w8 w9 w10"),
    ("w11 c", "w11 w12 d e"),
]


def build_tiny_cross_encoders(root: Path) -> dict[str, Path]:
    """Three tiny cross-encoder folders sharing one random init, each trained a few steps on its own labels."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(100)], *"abcdefghij"]
    raw = root / "init"
    raw.mkdir(parents=True)
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(raw)
    BertTokenizerFast(vocab=str(raw / "vocab.txt")).save_pretrained(raw)

    folders = {}
    for name, seed in (("general", 1), ("adapted", 2), ("third", 3)):
        ce = CrossEncoder(str(raw))
        hf = ce.transformers_model
        feats = ce.tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, return_tensors="pt")
        labels = torch.rand(len(PAIRS), generator=torch.Generator().manual_seed(seed))
        opt = torch.optim.Adam(hf.parameters(), lr=5e-2)
        hf.train()
        for _ in range(5):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(hf(**feats).logits.view(-1), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        hf.eval()
        folders[name] = root / name
        ce.save_pretrained(str(folders[name]))
    return folders


def demo() -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from querit_st.merge import slerp_merge, slerp_merge_many

    torch.set_num_threads(1)  # tiny models: threads only add overhead
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m = build_tiny_cross_encoders(root)
        merged = {
            # t is the weight of the second model: 0 keeps "general", 1 gives "adapted".
            "slerp t=0.5": slerp_merge(m["general"], m["adapted"], 0.5, root / "half", show_progress_bar=False),
            "slerp t=0.2": slerp_merge(m["general"], m["adapted"], 0.2, root / "fifth", show_progress_bar=False),
            # A gradient over the layers: embeddings and layer 0 from "general", the last layer and the head
            # from "adapted" -- except the classifier, pinned at 0.5.
            "gradient [0,1], head 0.5": slerp_merge(
                m["general"],
                m["adapted"],
                [0.0, 1.0],
                root / "gradient",
                parameter_t={"classifier": 0.5},
                show_progress_bar=False,
            ),
            # Three checkpoints, equal shares: sequential SLERP with t = 1/2 then 1/3.
            "3 models, equal weights": slerp_merge_many(
                [m["general"], m["adapted"], m["third"]], output_dir=root / "three", show_progress_bar=False
            ),
        }
        rows = [(name, CrossEncoder(str(path))) for name, path in {**m, **merged}.items()]
        print(f"{'model':<28}" + "".join(f"  pair {i}" for i in range(len(PAIRS))))
        for name, model in rows:
            scores = model.predict(PAIRS, show_progress_bar=False)
            print(f"{name:<28}" + "".join(f"  {s:6.4f}" for s in scores))
        print(f"\nmerged folders hold: {sorted(p.name for p in merged['slerp t=0.5'].iterdir())}")
        print((merged["slerp t=0.5"] / "README.md").read_text().split("## Merge", 1)[1][:600])


def main() -> int:
    if len(sys.argv) > 1:
        from querit_st.cli.merge import merge_command

        return merge_command(sys.argv[1:])
    demo()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
