"""Tests for querit_st.losses: the pure loss functions (hand-computed values, properties) and the three loss classes
(gradients, validation, ragged batches, a real CrossEncoderTrainer run on XQuAD-R)."""

from __future__ import annotations

import json
import math
import os
import random
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sentence_transformers import CrossEncoder
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from querit_st.losses import (
    ScoreGapHingeLoss,
    SoftLabelKLLoss,
    SoftLabelMSELoss,
    check_loss_kwargs,
    masked_zscore,
    normalize_teacher_scores,
    pad_score_lists,
    score_gap_hinge_loss,
    score_gap_hinge_terms,
    soft_label_kl_divergence,
    soft_label_mse,
)

# ---------------------------------------------------------------------------------------------------------------------
# A tiny random cross-encoder, built in-process (no network).
# ---------------------------------------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in a is was for on that by with as at from his her it an be are were which this or had not but "
    "their they who have has one all also its first new other been more after into two when there time than many "
    "most only some over about up such can during out would so these may while where what how why did years city "
    "state world war team year school people game season super bowl football league points won played media "
    "river water north south east west century government church king law power energy force light cell"
).split()


@pytest.fixture(scope="module", autouse=True)
def _single_torch_thread():
    """The tensors here are tiny: a second intra-op thread only adds wake-up latency (badly so on a shared CPU,
    where a 4x6 softmax took 20 ms with 2 threads and 4 us with 1). Restored after the module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trainable_tiny_ce_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding a 2-layer, 32-wide random BERT cross-encoder (num_labels=1) and its WordPiece tokenizer.

    Used by the training-loop test. Unlike ``conftest.tiny_cross_encoder_dir`` it has no dropout and a wider init,
    with which 30 optimizer steps move the loss clearly (with BERT's defaults the listwise losses barely move).
    """
    folder = tmp_path_factory.mktemp("losses_tiny_ce")
    chars = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(chars + string.punctuation) + ["##" + c for c in chars] + sorted(set(_WORDS))
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file))  # transformers 5 ignores vocab_file=: all [UNK]
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
        # no dropout (train mode is deterministic) and a wider init than BERT's 0.02, so that 30 optimizer steps are
        # enough for the training-loop tests to move the loss
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_ce(request: pytest.FixtureRequest) -> CrossEncoder:
    """The shared tiny cross-encoder of ``conftest.py`` (``tiny_cross_encoder_dir``), else the one above."""
    try:
        folder = request.getfixturevalue("tiny_cross_encoder_dir")
    except pytest.FixtureLookupError:
        folder = request.getfixturevalue("trainable_tiny_ce_dir")
    return CrossEncoder(str(folder), max_length=48)


QUERIES = ["what did the team win", "where is the river"]
DOCS = [
    ["the team won the super bowl", "the river runs north", "a cell has energy"],
    ["the river is in the north of the city", "football league points"],
]
LABELS = [torch.tensor([0.9, 0.1, 0.5]), torch.tensor([0.8, 0.2])]


def _t(
    rows: list[list[float]], padding_value: float = 0.0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded float64 matrix + mask from python lists."""
    return pad_score_lists([torch.tensor(r, dtype=dtype) for r in rows], padding_value=padding_value)


# ---------------------------------------------------------------------------------------------------------------------
# Pure functions against hand-computed values.
# ---------------------------------------------------------------------------------------------------------------------


def test_pad_score_lists_shapes_and_mask() -> None:
    padded, mask = pad_score_lists([torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0])], padding_value=-7.0)
    assert padded.tolist() == [[1.0, 2.0, 3.0], [4.0, -7.0, -7.0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_normalize_teacher_scores_hand_values() -> None:
    scores, mask = _t([[2.0, 4.0, 6.0], [1.0, 2.0, 3.0], [5.0, 5.0]], padding_value=99.0)
    assert normalize_teacher_scores(scores, mask, "none").tolist() == [[2, 4, 6], [1, 2, 3], [5, 5, 0]]
    # minmax: (x - min) / (max - min) per row; a constant row maps to 0.5; padding to 0.
    np.testing.assert_allclose(
        normalize_teacher_scores(scores, mask, "minmax").numpy(), [[0, 0.5, 1], [0, 0.5, 1], [0.5, 0.5, 0]]
    )
    # zscore of [1, 2, 3]: mean 2, population std sqrt(2/3) = 0.8165 -> [-1.2247, 0, 1.2247]; constant row -> 0.
    z = 1 / math.sqrt(2 / 3)
    np.testing.assert_allclose(
        normalize_teacher_scores(scores, mask, "zscore").numpy(),
        [[-z, 0, z], [-z, 0, z], [0, 0, 0]],
        atol=1e-12,
    )
    # sigmoid(0) = 0.5, sigmoid(2) = 1 / (1 + e^-2) = 0.8807970779778823
    sig = normalize_teacher_scores(torch.tensor([0.0, 2.0]), method="sigmoid")
    np.testing.assert_allclose(sig.numpy(), [0.5, 0.8807970779778823], rtol=1e-6)
    # a single-entry list: minmax 0.5, zscore 0
    assert normalize_teacher_scores(torch.tensor([[3.0]]), method="minmax").item() == 0.5
    assert normalize_teacher_scores(torch.tensor([[3.0]]), method="zscore").item() == 0.0
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_teacher_scores(scores, mask, "rank")  # type: ignore[arg-type]


def test_masked_zscore_equals_utils_zscore_per_row() -> None:
    """The torch z-score of the losses follows the one z-score rule of querit_st.utils.scores, row by row."""
    from querit_st.utils.scores import zscore

    rng = np.random.default_rng(0)
    rows = [rng.normal(size=int(n)) * rng.uniform(0.01, 100) + rng.normal() * 10 for n in rng.integers(1, 12, 40)]
    rows += [
        np.full(5, 3.25),  # constant
        np.array([7.0]),  # a single entry
        np.array([1e6, 1e6 + 1e-7, 1e6]),  # spread below 1e-12 * max|s|: constant under the rule
        np.array([0.0, 1e-13, 0.0]),  # spread below 1e-12 * 1: constant
        np.array([0.0, 1e-9, 0.0]),  # above it: a real z-score
    ]
    padded, mask = pad_score_lists([torch.tensor(r, dtype=torch.float64) for r in rows], padding_value=123.0)
    got = masked_zscore(padded, mask)
    assert got.dtype == torch.float64
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got[i, : len(row)].numpy(), zscore(row), rtol=1e-10, atol=1e-12, err_msg=f"{i}")
        assert got[i, len(row) :].eq(0).all()
    np.testing.assert_array_equal(normalize_teacher_scores(padded, mask, "zscore").numpy(), got.numpy())
    # float32 in, float32 out, same values up to float32 rounding
    np.testing.assert_allclose(masked_zscore(padded.float(), mask).numpy(), got.numpy(), atol=1e-5)


def test_loss_options_default_to_the_constructor_signature() -> None:
    """check_loss_kwargs reads each option's default from the loss's __init__: one source of truth."""
    import inspect

    for loss_cls in (SoftLabelMSELoss, SoftLabelKLLoss, ScoreGapHingeLoss):
        params = inspect.signature(loss_cls.__init__).parameters
        expected = {n: p.default for n, p in params.items() if n not in ("self", "model")}
        assert loss_cls.option_defaults() == expected
        assert loss_cls.check_options({}) == expected
        assert check_loss_kwargs(loss_cls, {}) == {}


def test_soft_label_mse_hand_values() -> None:
    # ((1 - 0)^2 + (2 - 4)^2) / 2 = 2.5
    assert soft_label_mse(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item() == pytest.approx(2.5)
    # ragged: valid pairs (1,0), (2,4), (3,1) -> (1 + 4 + 4) / 3 = 3; padding ignored
    student, mask = _t([[1.0, 2.0], [3.0]], padding_value=100.0)
    teacher, _ = _t([[0.0, 4.0], [1.0]], padding_value=-100.0)
    assert soft_label_mse(student, teacher, mask).item() == pytest.approx(3.0)


def test_kl_hand_values() -> None:
    # p = softmax([1, 0]) = [0.7311, 0.2689], q = [0.5, 0.5]: KL = sum p log(p / q) = 0.11094407167172737
    kl = soft_label_kl_divergence(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert kl.item() == pytest.approx(0.11094407167172737, rel=1e-6)
    # teacher temperature 2 on a ragged batch, computed separately with numpy:
    #   row 0: teacher [1, 0] / 2 vs student [0, 0]           -> 0.030299861980765938
    #   row 1: teacher [0.2, -1, 3] / 2 vs student [1, .5, -.5] -> 0.969365698141226
    student, mask = _t([[0.0, 0.0], [1.0, 0.5, -0.5]], padding_value=1e4)
    teacher, _ = _t([[1.0, 0.0], [0.2, -1.0, 3.0]], padding_value=-1e4)
    per_row = soft_label_kl_divergence(student, teacher, mask, teacher_temperature=2.0, reduction="none")
    np.testing.assert_allclose(per_row.numpy(), [0.030299861980765938, 0.969365698141226], rtol=1e-9)
    mean = soft_label_kl_divergence(student, teacher, mask, teacher_temperature=2.0)
    assert mean.item() == pytest.approx(0.49983278006099596, rel=1e-9)
    # softmax([2, 0] / 1) == softmax([1, 0] / 0.5): the distributions match, KL = 0
    kl = soft_label_kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]), student_temperature=0.5)
    assert abs(kl.item()) < 1e-7


def test_hinge_hand_values() -> None:
    teacher = torch.tensor([0.9, 0.1, 0.5])
    # n = 3 -> top ceil(0.3 * 3) = 1 document: doc 0 (t = 0.9). Pairs (better, worse): (0,1) w2, (0,2) w2, (2,1) w1.
    # student [3, 1, 2]: (0,1) relu(0.8*0.8 - 2) = 0, (0,2) relu(0.8*0.4 - 1) = 0, (2,1) relu(0.32 - 1) = 0 -> 0
    assert score_gap_hinge_loss(torch.tensor([3.0, 1.0, 2.0]), teacher).item() == 0.0
    # student [1, 3, 2]: (0,1) 0.64 + 2 = 2.64, (0,2) 0.32 + 1 = 1.32, (2,1) 0.32 + 1 = 1.32
    #   weighted mean (2 * 2.64 + 2 * 1.32 + 1 * 1.32) / (2 + 2 + 1) = 9.24 / 5 = 1.848
    assert score_gap_hinge_loss(torch.tensor([1.0, 3.0, 2.0]), teacher).item() == pytest.approx(1.848, rel=1e-6)
    # student [2, 1.8, 1.5]: (0,1) 0.64 - 0.2 = 0.44, (0,2) 0.32 - 0.5 -> 0, (2,1) 0.32 + 0.3 = 0.62
    #   (2 * 0.44 + 2 * 0 + 1 * 0.62) / 5 = 1.5 / 5 = 0.3
    assert score_gap_hinge_loss(torch.tensor([2.0, 1.8, 1.5]), teacher).item() == pytest.approx(0.3, rel=1e-6)
    # top_weight 1 disables the up-weighting: (0.44 + 0 + 0.62) / 3
    loss = score_gap_hinge_loss(torch.tensor([2.0, 1.8, 1.5]), teacher, top_weight=1.0)
    assert loss.item() == pytest.approx(1.06 / 3, rel=1e-6)
    # pair matrix: [i, j] is the pair "i better than j"
    losses, weights = score_gap_hinge_terms(torch.tensor([1.0, 3.0, 2.0]), teacher)
    assert weights.tolist() == [[0, 2, 2], [0, 0, 0], [0, 1, 0]]
    np.testing.assert_allclose(losses.numpy(), [[0, 2.64, 1.32], [0, 0, 0], [0, 1.32, 0]], rtol=1e-6)


def test_hinge_ties_make_no_pair_and_share_the_top() -> None:
    # teacher [0.5, 0.5, 0.1]: the tie (0, 1) is no pair; both tied docs are the top-1 (competition ranking).
    # pairs: (0,2) relu(0.32 - 0) = 0.32 w2, (1,2) relu(0.32 - 1) = 0 w2 -> (2 * 0.32) / 4 = 0.16
    student, teacher = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.5, 0.5, 0.1])
    _, weights = score_gap_hinge_terms(student, teacher)
    assert weights.tolist() == [[0, 0, 2], [0, 0, 2], [0, 0, 0]]
    assert score_gap_hinge_loss(student, teacher).item() == pytest.approx(0.16, rel=1e-6)
    # a constant list has no pair at all: the loss is 0 and still backpropagates
    student = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss = score_gap_hinge_loss(student, torch.tensor([[0.3, 0.3]]))
    loss.backward()
    assert loss.item() == 0.0 and student.grad is not None


@pytest.mark.parametrize(
    ("n", "top_fraction", "expected_weight_sum"),
    [
        (10, 0.3, 45 + 24),  # 45 pairs; top ceil(3.0) = 3 leaders: 9 + 8 + 7 = 24 pairs get weight 2
        (25, 0.28, 300 + 147),  # 0.28 * 25 is 7.000000000000001 in floats: 7 leaders, 24 + 23 + ... + 18 = 147
        (10, 0.05, 45 + 9),  # ceil(0.5) = 1 leader
        (10, 1.0, 90),  # every pair is led by a top document
        (10, 0.0, 45),  # nobody is in the top
    ],
)
def test_hinge_top_fraction_rounds_up_exactly(n: int, top_fraction: float, expected_weight_sum: float) -> None:
    teacher = torch.arange(n, dtype=torch.float32).flip(0)  # n distinct scores -> n (n - 1) / 2 pairs
    _, weights = score_gap_hinge_terms(torch.zeros(n), teacher, top_fraction=top_fraction)
    assert weights.sum().item() == expected_weight_sum


# ---------------------------------------------------------------------------------------------------------------------
# Ragged batches equal the unpadded per-query computation.
# ---------------------------------------------------------------------------------------------------------------------

RAGGED_TEACHER = [[0.9, 0.1, 0.5, 0.5], [2.0, -1.0], [0.3], [1.0, 4.0, 2.0, 3.0, 0.0]]
RAGGED_STUDENT = [[1.0, 3.0, 2.0, 0.0], [0.5, 0.7], [9.0], [-1.0, 0.0, 2.5, 1.0, 1.5]]


def _check_ragged_equals_unpadded(
    student_rows: list[list[float]], teacher_rows: list[list[float]], padding_value: float
) -> None:
    student, mask = _t(student_rows, padding_value)
    teacher, _ = _t(teacher_rows, -padding_value)
    singles = [
        (torch.tensor([s], dtype=torch.float64), torch.tensor([t], dtype=torch.float64))
        for s, t in zip(student_rows, teacher_rows)
    ]

    # KL: every row's value equals the row alone; the mean is the mean of the rows.
    per_row = soft_label_kl_divergence(student, teacher, mask, teacher_temperature=0.7, reduction="none")
    alone = torch.stack([soft_label_kl_divergence(s, t, teacher_temperature=0.7) for s, t in singles])
    torch.testing.assert_close(per_row, alone, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(soft_label_kl_divergence(student, teacher, mask, teacher_temperature=0.7), alone.mean())

    # Hinge: the batch's weighted mean equals sum(w * l) / sum(w) accumulated over the rows computed alone.
    num = den = 0.0
    for s, t in singles:
        losses, weights = score_gap_hinge_terms(s, t)
        num, den = num + float((losses * weights).sum()), den + float(weights.sum())
    expected = num / den if den else 0.0
    assert score_gap_hinge_loss(student, teacher, mask).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)

    # MSE on z-scored teachers: normalise each row alone, then MSE over all pairs flattened.
    flat_student = torch.cat([s.view(-1) for s, _ in singles])
    flat_target = torch.cat([normalize_teacher_scores(t, method="zscore").view(-1) for _, t in singles])
    expected_mse = torch.nn.functional.mse_loss(flat_student, flat_target)
    got = soft_label_mse(student, normalize_teacher_scores(teacher, mask, "zscore"), mask)
    torch.testing.assert_close(got, expected_mse, rtol=1e-9, atol=1e-12)


def test_ragged_masking_equals_unpadded_per_query() -> None:
    _check_ragged_equals_unpadded(RAGGED_STUDENT, RAGGED_TEACHER, padding_value=1e6)


# ---------------------------------------------------------------------------------------------------------------------
# Properties (hypothesis) on random ragged batches.
# ---------------------------------------------------------------------------------------------------------------------

_finite = st.floats(min_value=-30, max_value=30, allow_nan=False, allow_infinity=False, width=32)
# a coarse grid makes teacher ties frequent
_grid = st.integers(min_value=-12, max_value=12).map(lambda k: k / 4)
_padding = st.one_of(_finite, st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e30]))


@st.composite
def ragged_rows(draw: st.DrawFn, values: st.SearchStrategy[float] = _finite) -> tuple[list[list[float]], ...]:
    lengths = draw(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=4))
    student = [draw(st.lists(_finite, min_size=n, max_size=n)) for n in lengths]
    teacher = [draw(st.lists(st.one_of(values, _grid), min_size=n, max_size=n)) for n in lengths]
    return student, teacher


def _permute(rows: list[list[float]], perms: list[list[int]]) -> list[list[float]]:
    return [[row[i] for i in perm] for row, perm in zip(rows, perms)]


@settings(max_examples=500, deadline=None)
@given(ragged_rows(), st.floats(0.1, 5.0), st.floats(0.1, 5.0))
def test_property_kl_nonnegative_and_zero_at_teacher(rows, teacher_temperature: float, student_temperature: float):
    student_rows, teacher_rows = rows
    student, mask = _t(student_rows)
    teacher, _ = _t(teacher_rows)
    kl = soft_label_kl_divergence(student, teacher, mask, teacher_temperature, student_temperature, reduction="none")
    assert torch.isfinite(kl).all()
    assert (kl >= -1e-9).all()
    same = soft_label_kl_divergence(teacher, teacher, mask, teacher_temperature, teacher_temperature)
    assert abs(same.item()) < 1e-9


@settings(max_examples=500, deadline=None)
@given(ragged_rows(), st.floats(0.0, 2.0), st.floats(0.0, 3.0), st.floats(-5.0, 5.0))
def test_property_hinge_nonnegative_and_zero_when_gaps_exceed_margin(rows, alpha: float, extra: float, shift: float):
    student_rows, teacher_rows = rows
    student, mask = _t(student_rows)
    teacher, _ = _t(teacher_rows)
    loss = score_gap_hinge_loss(student, teacher, mask, alpha=alpha)
    assert torch.isfinite(loss) and loss.item() >= 0.0
    # student = c * teacher + shift with c > alpha: every student gap exceeds alpha times the teacher gap
    c = alpha + 0.01 + extra
    assert score_gap_hinge_loss(c * teacher + shift, teacher, mask, alpha=alpha).item() <= 1e-12


@settings(max_examples=500, deadline=None)
@given(ragged_rows(), st.randoms(use_true_random=False))
def test_property_permutation_invariance(rows, rnd: random.Random):
    student_rows, teacher_rows = rows
    perms = [rnd.sample(range(len(r)), len(r)) for r in student_rows]
    student, mask = _t(student_rows)
    teacher, _ = _t(teacher_rows)
    p_student, _ = _t(_permute(student_rows, perms))
    p_teacher, _ = _t(_permute(teacher_rows, perms))
    close = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        soft_label_kl_divergence(student, teacher, mask, reduction="none"),
        soft_label_kl_divergence(p_student, p_teacher, mask, reduction="none"),
        **close,
    )
    torch.testing.assert_close(
        score_gap_hinge_loss(student, teacher, mask), score_gap_hinge_loss(p_student, p_teacher, mask), **close
    )
    torch.testing.assert_close(soft_label_mse(student, teacher, mask), soft_label_mse(p_student, p_teacher, mask))
    for method in ("minmax", "zscore"):
        normalized = normalize_teacher_scores(teacher, mask, method).tolist()
        p_normalized, _ = _t(_permute([row[: len(r)] for row, r in zip(normalized, teacher_rows)], perms))
        torch.testing.assert_close(normalize_teacher_scores(p_teacher, mask, method), p_normalized, **close)


@settings(max_examples=500, deadline=None)
@given(ragged_rows(), _padding, _padding)
def test_property_padding_values_do_not_matter(rows, pad_a: float, pad_b: float):
    student_rows, teacher_rows = rows
    student_a, mask = _t(student_rows, pad_a)
    teacher_a, _ = _t(teacher_rows, pad_b)
    student_b, _ = _t(student_rows, 0.0)
    teacher_b, _ = _t(teacher_rows, 0.0)
    student_a.requires_grad_(True)
    student_b.requires_grad_(True)
    for fn in (
        lambda s, t: soft_label_kl_divergence(s, t, mask, 1.3, 0.8),
        lambda s, t: score_gap_hinge_loss(s, t, mask),
        lambda s, t: soft_label_mse(s, normalize_teacher_scores(t, mask, "zscore"), mask),
        lambda s, t: soft_label_mse(s, normalize_teacher_scores(t, mask, "minmax"), mask),
    ):
        loss_a, loss_b = fn(student_a, teacher_a), fn(student_b, teacher_b)
        torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=0)
        (grad_a,) = torch.autograd.grad(loss_a, student_a)
        (grad_b,) = torch.autograd.grad(loss_b, student_b)
        assert torch.isfinite(grad_a).all()
        torch.testing.assert_close(grad_a, grad_b, rtol=0, atol=0)
        assert (grad_a[~mask] == 0).all()


@settings(max_examples=500, deadline=None)
@given(ragged_rows(), st.floats(min_value=1e3, max_value=1e9))
def test_property_ragged_equals_unpadded(rows, padding_value: float):
    student_rows, teacher_rows = rows
    _check_ragged_equals_unpadded(student_rows, teacher_rows, padding_value)


# ---------------------------------------------------------------------------------------------------------------------
# The loss classes on a tiny random cross-encoder.
# ---------------------------------------------------------------------------------------------------------------------

ALL_LOSSES = [
    pytest.param(lambda m: SoftLabelMSELoss(m), id="mse"),
    pytest.param(lambda m: SoftLabelMSELoss(m, normalization="zscore"), id="mse-zscore"),
    pytest.param(lambda m: SoftLabelKLLoss(m, teacher_temperature=0.5), id="kl"),
    pytest.param(lambda m: ScoreGapHingeLoss(m), id="hinge"),
    pytest.param(lambda m: ScoreGapHingeLoss(m, normalization="minmax", top_weight=1.0), id="hinge-minmax"),
]


@pytest.mark.parametrize("make_loss", ALL_LOSSES)
def test_gradients_flow_to_model_parameters(tiny_ce: CrossEncoder, make_loss) -> None:
    loss_fn = make_loss(tiny_ce)
    tiny_ce.zero_grad()
    loss = loss_fn([QUERIES, DOCS], LABELS)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in tiny_ce.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # the embeddings (bottom of the network) receive gradient too, not only the classification head
    embeddings = tiny_ce.model.get_input_embeddings().weight.grad
    assert embeddings is not None and embeddings.abs().sum() > 0


def test_mse_pointwise_input_matches_torch_mse(tiny_ce: CrossEncoder) -> None:
    tiny_ce.eval()
    queries = ["what did the team win", "where is the river", "where is the river"]
    docs = ["the team won the super bowl", "the river runs north", "a cell has energy"]
    labels = torch.tensor([0.9, 0.7, 0.1])
    with torch.no_grad():
        scores = torch.tensor(tiny_ce.predict(list(zip(queries, docs)), activation_fn=nn.Identity()))
        loss = SoftLabelMSELoss(tiny_ce)([queries, docs], labels)
        sig = SoftLabelMSELoss(tiny_ce, normalization="sigmoid")([queries, docs], labels)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(scores, labels), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sig, torch.nn.functional.mse_loss(scores, labels.sigmoid()), rtol=1e-5, atol=1e-6)
    tiny_ce.zero_grad()
    tiny_ce.train()
    SoftLabelMSELoss(tiny_ce)([queries, docs], labels).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_ce.parameters())


@pytest.mark.parametrize("make_loss", ALL_LOSSES[:3])
def test_class_on_ragged_batch_equals_per_query(tiny_ce: CrossEncoder, make_loss) -> None:
    """The flatten -> score -> pad path: a ragged batch gives what its queries give one by one (eval: no dropout)."""
    tiny_ce.eval()
    with torch.no_grad():
        for mini_batch_size in (None, 1, 0):
            loss_fn = make_loss(tiny_ce)
            loss_fn.mini_batch_size = mini_batch_size
            batch = loss_fn([QUERIES, DOCS], LABELS)
            alone = [loss_fn([[q], [d]], [lbl]) for q, d, lbl in zip(QUERIES, DOCS, LABELS)]
            if isinstance(loss_fn, SoftLabelKLLoss):  # mean over queries
                expected = torch.stack(alone).mean()
            else:  # MSE: mean over pairs, so each query weighs by its list length
                expected = sum(a * len(d) for a, d in zip(alone, DOCS)) / sum(len(d) for d in DOCS)
            torch.testing.assert_close(batch, expected, rtol=1e-5, atol=1e-6)


def test_class_scores_are_the_model_logits(tiny_ce: CrossEncoder) -> None:
    tiny_ce.eval()
    loss_fn = SoftLabelKLLoss(tiny_ce)
    with torch.no_grad():
        student, teacher, mask = loss_fn.listwise_scores([QUERIES, DOCS], LABELS)
        logits = tiny_ce.predict([(q, d) for q, ds in zip(QUERIES, DOCS) for d in ds], activation_fn=nn.Identity())
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    torch.testing.assert_close(student[mask], torch.tensor(logits), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(teacher[mask], torch.cat(LABELS))


def test_prompt_and_task_are_accepted(tiny_ce: CrossEncoder) -> None:
    tiny_ce.eval()
    with torch.no_grad():
        for loss_fn in (SoftLabelMSELoss(tiny_ce), SoftLabelKLLoss(tiny_ce), ScoreGapHingeLoss(tiny_ce)):
            assert torch.isfinite(loss_fn([QUERIES, DOCS], LABELS, prompt="query: ", task=None))


# ---------------------------------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------------------------------

LISTWISE_CLASSES = [SoftLabelMSELoss, SoftLabelKLLoss, ScoreGapHingeLoss]


@pytest.mark.parametrize("loss_cls", LISTWISE_CLASSES)
@pytest.mark.parametrize(
    ("docs", "labels", "match"),
    [
        (DOCS, [torch.tensor([0.9, float("nan"), 0.5]), torch.tensor([0.8, 0.2])], r"row 0.*position 1 is NaN"),
        (DOCS, [torch.tensor([0.9, 0.1, 0.5]), torch.tensor([float("inf"), 0.2])], r"row 1.*position 0 is infinite"),
        (DOCS, [torch.tensor([0.9, 0.1, 0.5]), torch.tensor([-float("inf"), 0.2])], r"row 1.*infinite"),
        (DOCS, [torch.tensor([0.9, 0.1]), torch.tensor([0.8, 0.2])], r"row 0 has 3 documents but 2 teacher scores"),
        ([DOCS[0], []], [torch.tensor([0.9, 0.1, 0.5]), torch.tensor([])], r"row 1 has an empty document list"),
        (DOCS, None, r"labels not given"),
        (DOCS, [torch.tensor([0.9, 0.1, 0.5])], r"2 rows but 1 labels"),
    ],
    ids=["nan", "inf", "-inf", "length-mismatch", "empty-list", "no-labels", "missing-row"],
)
def test_invalid_listwise_batches_raise(tiny_ce: CrossEncoder, loss_cls, docs, labels, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        loss_cls(tiny_ce)([QUERIES, docs], labels)


def test_invalid_pointwise_batches_raise(tiny_ce: CrossEncoder) -> None:
    queries, docs = ["q one", "q two"], ["doc one", "doc two"]
    with pytest.raises(ValueError, match=r"row 1.*NaN"):
        SoftLabelMSELoss(tiny_ce)([queries, docs], torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match=r"row 0.*infinite"):
        SoftLabelMSELoss(tiny_ce)([queries, docs], torch.tensor([float("inf"), 0.5]))
    with pytest.raises(ValueError, match=r"expects 2 labels"):
        SoftLabelMSELoss(tiny_ce)([queries, docs], torch.tensor([0.5, 0.2, 0.1]))
    with pytest.raises(ValueError, match=r"labels not given"):
        SoftLabelMSELoss(tiny_ce)([queries, docs], None)
    for method in ("minmax", "zscore"):
        with pytest.raises(ValueError, match=rf"normalization='{method}'.*needs listwise rows"):
            SoftLabelMSELoss(tiny_ce, normalization=method)([queries, docs], torch.tensor([0.5, 0.2]))
    for loss_cls in (SoftLabelKLLoss, ScoreGapHingeLoss):
        with pytest.raises(ValueError, match=r"expects listwise rows"):
            loss_cls(tiny_ce)([queries, docs], torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match=r"two input columns"):
        SoftLabelKLLoss(tiny_ce)([queries, docs, docs], [torch.tensor([0.5])] * 2)
    with pytest.raises(ValueError, match=r"row 1 of the document column"):
        SoftLabelKLLoss(tiny_ce)([queries, [["doc"], "doc"]], [torch.tensor([0.5])] * 2)


def test_invalid_constructor_arguments_raise(tiny_ce: CrossEncoder) -> None:
    with pytest.raises(ValueError, match="unknown normalization"):
        SoftLabelMSELoss(tiny_ce, normalization="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        SoftLabelKLLoss(tiny_ce, teacher_temperature=0.0)
    with pytest.raises(ValueError, match="top_fraction"):
        ScoreGapHingeLoss(tiny_ce, top_fraction=1.5)
    with pytest.raises(ValueError, match="alpha"):
        ScoreGapHingeLoss(tiny_ce, alpha=-0.1)
    with pytest.raises(ValueError, match="CrossEncoder"):
        SoftLabelKLLoss(nn.Linear(2, 1))  # type: ignore[arg-type]


def test_config_and_citation(tiny_ce: CrossEncoder) -> None:
    assert SoftLabelMSELoss(tiny_ce, normalization="minmax").get_config_dict() == {
        "normalization": "minmax",
        "activation_fn": "torch.nn.modules.linear.Identity",
        "mini_batch_size": None,
    }
    assert SoftLabelKLLoss(tiny_ce, teacher_temperature=2.0, mini_batch_size=8).get_config_dict() == {
        "teacher_temperature": 2.0,
        "student_temperature": 1.0,
        "activation_fn": "torch.nn.modules.linear.Identity",
        "mini_batch_size": 8,
    }
    config = ScoreGapHingeLoss(tiny_ce).get_config_dict()
    assert {k: config[k] for k in ("alpha", "top_fraction", "top_weight", "normalization")} == {
        "alpha": 0.8,
        "top_fraction": 0.3,
        "top_weight": 2.0,
        "normalization": "none",
    }
    for loss_cls in LISTWISE_CLASSES:
        assert "arXiv:2606.19037" in loss_cls(tiny_ce).citation
    assert "hinton2015distilling" in SoftLabelKLLoss(tiny_ce).citation


# ---------------------------------------------------------------------------------------------------------------------
# A real CrossEncoderTrainer run on XQuAD-R (English).
# ---------------------------------------------------------------------------------------------------------------------


def _data_root() -> Path:
    env = os.environ.get("QUERIT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _read_jsonl(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return {row["_id"]: row["text"] for row in map(json.loads, f)}


N_DISTRACTORS = 8


@pytest.fixture(scope="module")
def xquad_listwise_rows() -> dict[str, list]:
    """40 train queries of XQuAD-R (en) as listwise rows: (query, [positive, 4 distractors]) with soft labels.

    The teacher gives the qrel positive 1.0 and each of 8 fixed distractor sentences (from other articles) its own
    score in 0.0 .. 0.35, so a tiny random student has something consistent to learn within 30 steps.
    """
    folder = _data_root() / "xquad-r-en"
    if not (folder / "qrels" / "train.tsv").exists():
        pytest.skip(f"XQuAD-R data not found under {folder} (set QUERIT_DATA)")
    queries = _read_jsonl(folder / "queries.jsonl")
    corpus = _read_jsonl(folder / "corpus.jsonl")
    with open(folder / "qrels" / "train.tsv", encoding="utf-8") as f:
        qrels = [line.rstrip("\n").split("\t")[:2] for line in f.readlines()[1:]][:40]
    distractors = sorted(corpus)[-N_DISTRACTORS:]
    assert not {positive for _, positive in qrels} & set(distractors)
    rng = random.Random(0)
    rows: dict[str, list] = {"query": [], "docs": [], "scores": []}
    for query_id, positive_id in qrels:
        picked = rng.sample(range(N_DISTRACTORS), 4)
        rows["query"].append(queries[query_id])
        rows["docs"].append([corpus[positive_id]] + [corpus[distractors[k]] for k in picked])
        rows["scores"].append([1.0] + [0.05 * k for k in picked])
    return rows


@pytest.mark.parametrize(
    "make_loss",
    [
        pytest.param(lambda m: SoftLabelMSELoss(m), id="mse"),
        pytest.param(lambda m: SoftLabelKLLoss(m), id="kl"),
        pytest.param(lambda m: ScoreGapHingeLoss(m), id="hinge"),
    ],
)
def test_cross_encoder_trainer_loss_goes_down(
    trainable_tiny_ce_dir: Path, xquad_listwise_rows: dict[str, list], make_loss, tmp_path: Path
) -> None:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(str(trainable_tiny_ce_dir), max_length=64)
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=30,  # 40 rows / batch 4: 3 epochs of 10 steps
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(xquad_listwise_rows), loss=make_loss(model)
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    # The first and the last 10 steps each see all 40 rows once, so their means compare like for like.
    first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
    assert last < 0.9 * first, f"training loss did not go down: first epoch {first:.4f}, last epoch {last:.4f}"
