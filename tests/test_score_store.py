"""The on-disk score store: a teacher (or the evaluation's reranker) never scores a pair twice across runs, and an
interrupted scoring run keeps the chunks it finished."""

from __future__ import annotations

import numpy as np
import pytest

from querit_st.teachers import CrossEncoderTeacher, EnsembleTeacher, Teacher, pair_key
from querit_st.teachers.store import ScoreStore
from querit_st.utils import QueritInputError


class TableTeacher(Teacher):
    """Scores from a lookup table; records every pair it scores; can fail on its n-th call."""

    def __init__(self, table, name="t", fail_on_call=None):
        super().__init__()
        self.table, self.name, self.fail_on_call = table, name, fail_on_call
        self.calls: list[int] = []

    def _score_pairs(self, queries, documents):
        self.calls.append(len(queries))
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt("interrupted")
        return [self.table[(q, d)] for q, d in zip(queries, documents)]

    def fingerprint(self):
        return {"class": "TableTeacher", "name": self.name}


def _table(n):
    return {(f"q{i % 7}", f"doc {i}"): float(i) / 3 for i in range(n)}


def test_store_roundtrip_and_reopen(tmp_path):
    path = tmp_path / "sub" / "s.sqlite"
    store = ScoreStore(path)
    keys = [pair_key("q", f"d{i}") for i in range(2000)]  # more keys than one SELECT takes
    store.put({k: float(i) for i, k in enumerate(keys)})
    store.close()
    again = ScoreStore(path)
    got = again.get(keys + [pair_key("q", "missing")])
    assert len(again) == 2000 and len(got) == 2000
    assert got[keys[1234]] == 1234.0


def test_persisted_teacher_reads_back_instead_of_scoring(tmp_path):
    table = _table(50)
    qs, ds = [q for q, _ in table], [d for _, d in table]
    first = TableTeacher(table).persist(tmp_path)
    a = first.score(qs, ds)
    assert first.cache_misses == 50 and len(first.store) == 50
    second = TableTeacher(table).persist(tmp_path)  # a later run: same key, same file
    b = second.score(qs + qs[:3], ds + ds[:3])
    np.testing.assert_array_equal(b[:50], a)
    np.testing.assert_array_equal(b[50:], a[:3])
    assert second.calls == [] and (second.cache_misses, second.cache_hits) == (0, 53)
    other = TableTeacher(table, name="other").persist(tmp_path)  # another scorer: its own file
    other.score(qs[:5], ds[:5])
    assert other.calls == [5] and other.store.path != first.store.path


def test_interrupted_scoring_keeps_finished_chunks(tmp_path):
    table = _table(25)
    qs, ds = [q for q, _ in table], [d for _, d in table]
    broken = TableTeacher(table, fail_on_call=3).persist(tmp_path)
    broken.store_chunk = 10
    with pytest.raises(KeyboardInterrupt):
        broken.score(qs, ds)
    assert broken.calls == [10, 10, 5] and len(broken.store) == 20  # the third chunk never landed
    resumed = TableTeacher(table).persist(tmp_path)
    resumed.store_chunk = 10
    got = resumed.score(qs, ds)
    assert resumed.calls == [5]  # only what the interrupted run had not finished
    np.testing.assert_array_equal(got, [table[p] for p in zip(qs, ds)])


def test_only_cacheable_teachers_persist(tmp_path):
    ens = EnsembleTeacher([TableTeacher(_table(3))])
    with pytest.raises(QueritInputError, match="cacheable"):
        ens.persist(tmp_path)
    off = TableTeacher(_table(3))
    off.cache_enabled = False
    with pytest.raises(QueritInputError, match="cache"):
        off.persist(tmp_path)


def test_cross_encoder_store_key_is_content_and_prompt_based(tiny_cross_encoder_dir, tmp_path):
    """Two loads of the same weights share a store; other weights, another instruction or inference mode do not;
    the stored scores are the model's."""
    import torch
    from querit_st.cross_encoder import QueritCrossEncoder

    pairs = [("electric field", "the electric field of a wave"), ("football league", "the super bowl season")]
    qs, ds = [q for q, _ in pairs], [d for _, d in pairs]
    a = CrossEncoderTeacher(QueritCrossEncoder(str(tiny_cross_encoder_dir))).persist(tmp_path)
    ref = a.score(qs, ds)
    b = CrossEncoderTeacher(QueritCrossEncoder(str(tiny_cross_encoder_dir))).persist(tmp_path)
    np.testing.assert_array_equal(b.score(qs, ds), ref)
    assert b.store.path == a.store.path and b.cache_misses == 0
    instructed = CrossEncoderTeacher(QueritCrossEncoder(str(tiny_cross_encoder_dir)), instruction="Find physics")
    assert instructed.persist(tmp_path).store.path != a.store.path
    direct = QueritCrossEncoder(str(tiny_cross_encoder_dir)).predict(pairs, instruction="Find physics",
                                                                     activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(instructed.score(qs, ds), direct, rtol=1e-5, atol=1e-6)
    given = QueritCrossEncoder(str(tiny_cross_encoder_dir))
    packed = CrossEncoderTeacher(given, inference="packed", inplace=True).persist(tmp_path)
    assert packed.store.path != a.store.path and packed.model is given  # optimised in place: no copy
    np.testing.assert_allclose(packed.score(qs, ds), ref, rtol=1e-5, atol=1e-6)
    copied = CrossEncoderTeacher(QueritCrossEncoder(str(tiny_cross_encoder_dir)), inference="packed").persist(tmp_path)
    assert copied.store.path == packed.store.path  # keyed by the weights as given, before optimisation
    changed = QueritCrossEncoder(str(tiny_cross_encoder_dir))
    with torch.no_grad():
        next(changed.parameters()).add_(1.0)
    assert CrossEncoderTeacher(changed).persist(tmp_path).store.path != a.store.path


def test_instruction_needs_a_querit_cross_encoder(tiny_cross_encoder_dir):
    from sentence_transformers import CrossEncoder

    with pytest.raises(QueritInputError, match="QueritCrossEncoder"):
        CrossEncoderTeacher(CrossEncoder(str(tiny_cross_encoder_dir)), instruction="Find physics")
    with pytest.raises(QueritInputError, match="instruction"):
        CrossEncoderTeacher(str(tiny_cross_encoder_dir), instruction="  ")
