"""The Querit-Reranker paper: its title, address and BibTeX, in one place for model cards, losses and MTEB metadata."""

from __future__ import annotations

QUERIT_PAPER_TITLE = (
    "Querit-Reranker: Training Compact Multilingual Rerankers via Efficient Label-Free Distribution Adaptation"
)
QUERIT_PAPER_URL = "https://arxiv.org/abs/2606.19037"

#: BibTeX of the paper (the entry of mteb's model registry, plus ``howpublished`` naming the arXiv id).
QUERIT_CITATION = """@misc{zhong2026queritrerankertrainingcompactmultilingual,
      title={Querit-Reranker: Training Compact Multilingual Rerankers via Efficient Label-Free Distribution Adaptation},
      author={Yunfei Zhong and Jun Yang and Wei Huang and Yinqiong Cai and Haosheng Qian and Yixing Fan and Ruqing Zhang and Lixin Su and Daiting Shi and Jiafeng Guo},
      year={2026},
      eprint={2606.19037},
      archivePrefix={arXiv},
      primaryClass={cs.IR},
      url={https://arxiv.org/abs/2606.19037},
      howpublished={arXiv preprint arXiv:2606.19037},
}"""

__all__ = ["QUERIT_CITATION", "QUERIT_PAPER_TITLE", "QUERIT_PAPER_URL"]
