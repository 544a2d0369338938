//! The review workflow, attacked through the airlock's API (and so through the database):
//! self-review, double votes, peeking at votes, ties, resubmission, submission without context.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::*;
use kura_airlock::{AirlockError, Context, Decision, Outcome, State};

fn the_author_can_never_review_their_own_output(f: Fixture) {
    f.submitted("out-a", &passing_table(), &[]);
    for decision in [
        Decision::Approve,
        Decision::RequestChanges,
        Decision::Reject,
    ] {
        let err = f
            .airlock
            .vote("out-a", AUTHOR, decision, "looks fine to me", t(5))
            .unwrap_err();
        assert!(matches!(err, AirlockError::SelfReview { .. }), "{err}");
    }
    let review = f.airlock.review("out-a").unwrap();
    assert_eq!(review.state, State::Submitted);
    assert!(review.visible_votes("checker1").is_empty());
    // Even once approved by two checkers, the author's vote is not taken (before the state).
    f.airlock
        .vote("out-a", "checker1", Decision::Approve, "", t(6))
        .unwrap();
    let err = f
        .airlock
        .vote("out-a", AUTHOR, Decision::Approve, "", t(7))
        .unwrap_err();
    assert!(matches!(err, AirlockError::SelfReview { .. }), "{err}");
    assert_eq!(f.airlock.review("out-a").unwrap().state, State::Submitted);
}

fn only_the_author_edits_submits_or_withdraws(f: Fixture) {
    let sha = write_output(f.state(), "out-b", &passing_table());
    let err = f
        .airlock
        .open_review(staged("out-b", &sha, "SELECT 1"), "checker1", t(0))
        .unwrap_err();
    assert!(matches!(err, AirlockError::NotAuthor { .. }), "{err}");
    f.airlock
        .open_review(staged("out-b", &sha, "SELECT 1"), AUTHOR, t(0))
        .unwrap();
    for result in [
        f.airlock
            .set_context("out-b", "checker1", context(), t(1))
            .err(),
        f.airlock.submit("out-b", "checker1", t(1)).err(),
        f.airlock.withdraw("out-b", "checker1", t(1)).err(),
    ] {
        assert!(
            matches!(result, Some(AirlockError::NotAuthor { .. })),
            "{result:?}"
        );
    }
}

fn a_checker_votes_at_most_once_per_round(f: Fixture) {
    f.submitted("out-c", &passing_table(), &[]);
    f.airlock
        .vote("out-c", "checker1", Decision::Approve, "", t(5))
        .unwrap();
    // A second vote by the same checker, whatever it says, is refused and changes nothing.
    for decision in [Decision::Approve, Decision::Reject] {
        let err = f
            .airlock
            .vote("out-c", "checker1", decision, "again", t(6))
            .unwrap_err();
        assert!(
            matches!(err, AirlockError::AlreadyVoted { round: 1, .. }),
            "{err}"
        );
    }
    let review = f.airlock.review("out-c").unwrap();
    assert_eq!(
        review.state,
        State::Submitted,
        "one checker cannot approve alone"
    );
    assert_eq!(review.visible_votes("checker1").len(), 1);
}

fn votes_are_blind_until_the_round_closes(f: Fixture) {
    f.submitted("out-d", &passing_table(), &[]);
    f.airlock
        .vote(
            "out-d",
            "checker1",
            Decision::RequestChanges,
            "merge Osaka",
            t(5),
        )
        .unwrap();
    let review = f.airlock.review("out-d").unwrap();
    // Checker B (not yet voted), the author and a supervisor see no vote; A sees only A's own.
    for viewer in ["checker2", AUTHOR, "supervisor"] {
        assert!(
            review.visible_votes(viewer).is_empty(),
            "{viewer} saw a vote"
        );
        let view = review.view(viewer);
        assert!(view.votes.is_empty());
        let json = serde_json::to_string(&view).unwrap();
        assert!(!json.contains("merge Osaka"), "{viewer}: {json}");
        assert!(!json.contains("request_changes"), "{viewer}: {json}");
    }
    assert_eq!(review.visible_votes("checker1").len(), 1);
    let open = review.view("checker2").open_round.unwrap();
    assert_eq!((open.votes_cast, open.awaiting), (1, "second_checker"));

    // B disagrees: the round stays open for a tiebreaker; still nobody sees the other's vote.
    let (review, outcome) = f
        .airlock
        .vote("out-d", "checker2", Decision::Approve, "", t(6))
        .unwrap();
    assert_eq!(outcome, None);
    assert_eq!(review.visible_votes("checker2").len(), 1);
    assert_eq!(review.visible_votes("checker2")[0].checker, "checker2");
    assert!(review.visible_votes("checker3").is_empty());
    assert_eq!(
        review.view("checker3").open_round.unwrap().awaiting,
        "tiebreaker"
    );

    // The third checker decides; the closed round is visible to everyone.
    let (review, outcome) = f
        .airlock
        .vote(
            "out-d",
            "checker3",
            Decision::RequestChanges,
            "agree with A",
            t(7),
        )
        .unwrap();
    assert_eq!(outcome, Some(Outcome::ChangesRequested));
    assert_eq!(review.visible_votes(AUTHOR).len(), 3);
    assert_eq!(review.visible_votes("anyone").len(), 3);
}

fn a_tie_is_broken_by_a_third_checker_and_the_majority_decides(f: Fixture) {
    // approve + reject, then approve: approved by two of three.
    f.submitted("out-e", &passing_table(), &[]);
    f.airlock
        .vote("out-e", "checker1", Decision::Approve, "", t(5))
        .unwrap();
    f.airlock
        .vote("out-e", "checker2", Decision::Reject, "identifying", t(6))
        .unwrap();
    assert_eq!(f.airlock.review("out-e").unwrap().state, State::Submitted);
    // The tiebreaker must be a third person.
    let err = f
        .airlock
        .vote("out-e", "checker1", Decision::Approve, "", t(7))
        .unwrap_err();
    assert!(matches!(err, AirlockError::AlreadyVoted { .. }), "{err}");
    let (review, outcome) = f
        .airlock
        .vote("out-e", "checker3", Decision::Approve, "", t(8))
        .unwrap();
    assert_eq!(outcome, Some(Outcome::Approved));
    assert_eq!(review.state, State::Approved);
    let mut approvers = review.approvers(1);
    approvers.sort();
    assert_eq!(approvers, ["checker1", "checker3"]);
    // No fourth vote on a closed round.
    let err = f
        .airlock
        .vote("out-e", "checker4", Decision::Reject, "late", t(9))
        .unwrap_err();
    assert!(matches!(err, AirlockError::WrongState { .. }), "{err}");

    // A three-way split (approve, changes, reject) is not an approval: changes requested.
    f.submitted("out-f", &passing_table(), &[]);
    f.airlock
        .vote("out-f", "checker1", Decision::Approve, "", t(5))
        .unwrap();
    f.airlock
        .vote("out-f", "checker2", Decision::Reject, "no", t(6))
        .unwrap();
    let (review, outcome) = f
        .airlock
        .vote(
            "out-f",
            "checker3",
            Decision::RequestChanges,
            "merge rows",
            t(7),
        )
        .unwrap();
    assert_eq!(outcome, Some(Outcome::ChangesRequested));
    assert_eq!(review.state, State::ChangesRequested);
}

fn resubmission_starts_a_new_round_and_keeps_the_old_votes(mut f: Fixture) {
    f.submitted("out-g", &passing_table(), &[]);
    f.airlock
        .vote(
            "out-g",
            "checker1",
            Decision::RequestChanges,
            "say which year",
            t(5),
        )
        .unwrap();
    f.airlock
        .vote(
            "out-g",
            "checker2",
            Decision::RequestChanges,
            "denominator?",
            t(6),
        )
        .unwrap();
    // Votes need a reason when they are not approvals.
    let review = f.airlock.review("out-g").unwrap();
    assert_eq!(review.state, State::ChangesRequested);

    let mut ctx = context();
    ctx.denominators = "Consenting MG patients with a FY2024 form (one per patient)".into();
    f.airlock
        .set_context("out-g", AUTHOR, ctx.clone(), t(7))
        .unwrap();
    f.reopen(); // the round survives a restart
    let review = f.airlock.submit("out-g", AUTHOR, t(8)).unwrap();
    assert_eq!(review.state, State::Submitted);
    assert_eq!(review.rounds.len(), 2);
    assert_eq!(review.rounds[0].outcome, Some(Outcome::ChangesRequested));
    assert_eq!(review.rounds[1].context, ctx);
    // Round 1's votes stay visible; round 2 is blind again and the same checkers vote anew.
    assert_eq!(review.visible_votes("checker3").len(), 2);
    f.airlock
        .vote("out-g", "checker1", Decision::Approve, "", t(9))
        .unwrap();
    let review = f.airlock.review("out-g").unwrap();
    assert_eq!(
        review.visible_votes("checker2").len(),
        2,
        "round 2 vote leaked"
    );
    let (review, outcome) = f
        .airlock
        .vote("out-g", "checker2", Decision::Approve, "", t(10))
        .unwrap();
    assert_eq!(outcome, Some(Outcome::Approved));
    assert_eq!(review.visible_votes("x").len(), 4);
    let actions: Vec<&str> = review.history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "submitted").count(), 2);
}

fn submission_needs_the_context_and_refusing_votes_need_a_comment(f: Fixture) {
    let sha = write_output(f.state(), "out-h", &passing_table());
    f.airlock
        .open_review(staged("out-h", &sha, "SELECT 1"), AUTHOR, t(0))
        .unwrap();
    let err = f.airlock.submit("out-h", AUTHOR, t(1)).unwrap_err();
    assert!(matches!(err, AirlockError::Invalid(_)), "{err}");
    // Fields present but empty or too short ("n/a") are refused, naming them.
    let thin = Context {
        description: "counts".into(),
        denominators: "   ".into(),
        method: "n/a".into(),
        population_filters: vec![],
    };
    f.airlock.set_context("out-h", AUTHOR, thin, t(2)).unwrap();
    let err = f.airlock.submit("out-h", AUTHOR, t(3)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("denominators") && msg.contains("method") && msg.contains("description"),
        "{msg}"
    );
    assert_eq!(f.airlock.review("out-h").unwrap().state, State::Draft);

    f.airlock
        .set_context("out-h", AUTHOR, context(), t(4))
        .unwrap();
    f.airlock.submit("out-h", AUTHOR, t(5)).unwrap();
    let err = f
        .airlock
        .vote("out-h", "checker1", Decision::Reject, "  ", t(6))
        .unwrap_err();
    assert!(matches!(err, AirlockError::Invalid(_)), "{err}");
    // The context cannot change under the checkers' eyes.
    let err = f
        .airlock
        .set_context("out-h", AUTHOR, context(), t(7))
        .unwrap_err();
    assert!(matches!(err, AirlockError::WrongState { .. }), "{err}");
}

fn withdrawal_closes_the_round_and_is_final(f: Fixture) {
    f.submitted("out-i", &passing_table(), &[]);
    f.airlock
        .vote("out-i", "checker1", Decision::Approve, "", t(5))
        .unwrap();
    let review = f.airlock.withdraw("out-i", AUTHOR, t(6)).unwrap();
    assert_eq!(review.state, State::Withdrawn);
    assert_eq!(review.rounds[0].outcome, Some(Outcome::Withdrawn));
    assert!(f
        .airlock
        .vote("out-i", "checker2", Decision::Approve, "", t(7))
        .is_err());
    assert!(f.airlock.submit("out-i", AUTHOR, t(8)).is_err());
    assert!(f.airlock.release("out-i", t(9)).is_err());
}

on_both!(
    the_author_can_never_review_their_own_output,
    only_the_author_edits_submits_or_withdraws,
    a_checker_votes_at_most_once_per_round,
    votes_are_blind_until_the_round_closes,
    a_tie_is_broken_by_a_third_checker_and_the_majority_decides,
    resubmission_starts_a_new_round_and_keeps_the_old_votes,
    submission_needs_the_context_and_refusing_votes_need_a_comment,
    withdrawal_closes_the_round_and_is_final,
);
