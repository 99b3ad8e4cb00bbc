"""Tests for noisylabel.annotators: labels, soft targets and agreement from vote counts."""

from __future__ import annotations

import numpy as np
import pytest

from noisylabel.annotators import (
    NO_LABEL,
    VOTE_RULES,
    check_vote_counts,
    majority_vote,
    plurality_vote,
    soft_vote_targets,
    vote_agreement,
    vote_labels,
)

COUNTS = np.array([
    [6, 3, 1, 0],  # clear majority
    [4, 4, 2, 0],  # tie at the top
    [5, 1, 4, 0],  # 5 of 10 is not more than half, but 5 of 9 once the single vote is dropped
    [0, 0, 0, 0],  # no votes
    [1, 1, 1, 0],  # only single votes: nothing is left after dropping them
    [0, 0, 0, 10],  # unanimous
])


def test_majority_drops_single_votes_then_needs_more_than_half() -> None:
    np.testing.assert_array_equal(majority_vote(COUNTS), [0, NO_LABEL, 0, NO_LABEL, NO_LABEL, 3])
    # without dropping, row 2 has 5 of 10 votes: not more than half
    np.testing.assert_array_equal(
        majority_vote(COUNTS, drop_single=False), [0, NO_LABEL, NO_LABEL, NO_LABEL, NO_LABEL, 3]
    )


def test_plurality_gives_no_label_on_ties_and_empty_rows() -> None:
    np.testing.assert_array_equal(plurality_vote(COUNTS), [0, NO_LABEL, 0, NO_LABEL, NO_LABEL, 3])
    # a tie is not resolved by the class index, whichever class comes first
    np.testing.assert_array_equal(plurality_vote([[0, 2, 2], [2, 2, 0]]), [NO_LABEL, NO_LABEL])


def test_soft_targets_are_vote_shares_and_empty_rows_stay_zero() -> None:
    t = soft_vote_targets(COUNTS)
    np.testing.assert_allclose(t[0], [0.6, 0.3, 0.1, 0.0])
    np.testing.assert_array_equal(t[3], 0.0)
    np.testing.assert_allclose(t[[0, 1, 2, 4, 5]].sum(1), 1.0)
    dropped = soft_vote_targets(COUNTS, drop_single=True)
    np.testing.assert_allclose(dropped[2], [5 / 9, 0.0, 4 / 9, 0.0])
    np.testing.assert_array_equal(dropped[4], 0.0)  # every vote was a single one


def test_agreement_is_the_share_of_votes_on_the_chosen_class() -> None:
    labels = majority_vote(COUNTS)
    np.testing.assert_allclose(vote_agreement(COUNTS, labels), [0.6, 0.0, 0.5, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(vote_agreement(COUNTS, np.array([1, 1, 2, 0, 0, 3])),
                               [0.3, 0.4, 0.4, 0.0, 1 / 3, 1.0])


@pytest.mark.parametrize("rule", VOTE_RULES)
def test_vote_labels_dispatches_by_rule(rule) -> None:
    expected = majority_vote(COUNTS) if rule == "majority" else plurality_vote(COUNTS)
    np.testing.assert_array_equal(vote_labels(COUNTS, rule=rule), expected)


def test_vote_labels_unknown_rule_names_it() -> None:
    with pytest.raises(ValueError, match="rule='mean'"):
        vote_labels(COUNTS, rule="mean")


@pytest.mark.parametrize(
    ("counts", "error", "match"),
    [
        ([[1, -2]], ValueError, r"counts\[0, 1\] = -2\.0"),
        ([[1, 0], [0.5, 1]], ValueError, r"counts\[1, 0\] = 0\.5"),
        ([[1, np.nan]], ValueError, r"counts\[0, 1\] = nan"),
        ([1, 2, 3], ValueError, r"shape \(N, K\).*\(3,\)"),
        ([["a", "b"]], TypeError, "dtype <U1"),
        ([[True, False]], TypeError, "dtype bool"),
    ],
)
def test_bad_counts_name_the_value(counts, error, match) -> None:
    with pytest.raises(error, match=match):
        check_vote_counts(counts)
    with pytest.raises(error, match=match):
        majority_vote(counts)


def test_agreement_rejects_labels_out_of_range_or_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"labels\[1\] = 4"):
        vote_agreement(COUNTS[:2], np.array([0, 4]))
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        vote_agreement(COUNTS, np.array([0, 1]))
