//! The review workflow as pure logic (no IO; time is a parameter): states, the author's context,
//! rounds of two blind votes with a third checker breaking ties, and what each viewer may see.
//!
//! ```text
//! draft --submit--> submitted --2 approve--> approved --release--> released
//!   ^                  |  |                     |
//!   |                  |  +--2 reject--> rejected (final)
//!   +--(edit context)--+--2 changes--> changes_requested --submit--> submitted (next round)
//! withdrawn: by the author from draft, submitted, changes_requested or approved.
//! ```
//! A round is decided by the median of its votes ordered approve < changes < reject: two
//! agreeing votes decide; after a split a third checker votes and the majority of three decides;
//! a three-way split (approve, changes, reject) gives `changes_requested`. So nothing is approved
//! without two approvals. Votes of the open round are hidden from everyone but their own checker
//! until the round closes (see [`Review::visible_votes`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::AirlockError;
pub use crate::model::{
    CheckStamp, Context, Decision, HistoryEntry, Outcome, Round, StagedOutput, State, Vote,
    MAX_FILTERS, MAX_TEXT_BYTES, MIN_CONTEXT_CHARS, SYSTEM_ACTOR,
};

/// Where the open round stands, safe to show to anyone who may see the review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenRound {
    pub number: u32,
    pub votes_cast: usize,
    /// `first_checker`, `second_checker` or `tiebreaker` (the first two disagreed).
    pub awaiting: &'static str,
    /// Whether the viewer has voted in this round.
    pub viewer_voted: bool,
}

/// A review as one viewer may see it (what the server serialises).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewView {
    pub output: StagedOutput,
    pub state: State,
    pub context: Option<Context>,
    pub rounds: Vec<Round>,
    pub open_round: Option<OpenRound>,
    pub votes: Vec<Vote>,
    pub history: Vec<HistoryEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The review of one staged output. Votes are private: read them through
/// [`Review::visible_votes`], which applies the blinding rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub output: StagedOutput,
    pub state: State,
    /// The author's current (draft) context; each round keeps the one it was submitted with.
    pub context: Option<Context>,
    pub rounds: Vec<Round>,
    pub(crate) votes: Vec<Vote>,
    pub history: Vec<HistoryEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Review {
    /// A new review in `draft`, opened by the output's author.
    pub fn new(
        output: StagedOutput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Review, AirlockError> {
        if actor != output.author {
            return Err(AirlockError::NotAuthor {
                output: output.id,
                action: "open its review",
            });
        }
        let mut review = Review {
            output,
            state: State::Draft,
            context: None,
            rounds: Vec::new(),
            votes: Vec::new(),
            history: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        review.log(actor, "opened", "", now);
        Ok(review)
    }

    /// The open round (state `submitted`).
    pub fn open_round(&self) -> Option<&Round> {
        self.rounds
            .last()
            .filter(|_| self.state == State::Submitted)
    }

    /// The round that approved the output (state `approved` or `released`).
    pub fn approved_round(&self) -> Option<&Round> {
        self.rounds
            .last()
            .filter(|r| r.outcome == Some(Outcome::Approved))
    }

    /// Checkers who approved in `round`.
    pub fn approvers(&self, round: u32) -> Vec<String> {
        self.votes
            .iter()
            .filter(|v| v.round == round && v.decision == Decision::Approve)
            .map(|v| v.checker.clone())
            .collect()
    }

    /// The votes `viewer` may see: every vote of a closed round; of the open round only the
    /// viewer's own. Nobody (author, checkers who voted, the tiebreaker, supervisors) sees
    /// another checker's decision or comment before the round closes, so each vote is cast
    /// without knowing the others.
    pub fn visible_votes(&self, viewer: &str) -> Vec<Vote> {
        let open = self.open_round().map(|r| r.number);
        self.votes
            .iter()
            .filter(|v| Some(v.round) != open || v.checker == viewer)
            .cloned()
            .collect()
    }

    /// Everything `viewer` may see, for the UI.
    pub fn view(&self, viewer: &str) -> ReviewView {
        let open_round = self.open_round().map(|r| {
            let cast: Vec<&Vote> = self.votes.iter().filter(|v| v.round == r.number).collect();
            OpenRound {
                number: r.number,
                votes_cast: cast.len(),
                awaiting: match cast.len() {
                    0 => "first_checker",
                    1 => "second_checker",
                    _ => "tiebreaker",
                },
                viewer_voted: cast.iter().any(|v| v.checker == viewer),
            }
        });
        ReviewView {
            output: self.output.clone(),
            state: self.state,
            context: self.context.clone(),
            rounds: self.rounds.clone(),
            open_round,
            votes: self.visible_votes(viewer),
            history: self.history.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The author saves (or edits) the context, in `draft` or `changes_requested`.
    pub fn set_context(
        &mut self,
        actor: &str,
        context: Context,
        now: DateTime<Utc>,
    ) -> Result<(), AirlockError> {
        self.author_only(actor, "edit its context")?;
        self.expect(
            &[State::Draft, State::ChangesRequested],
            "edit the context",
            "the context can change only before submission or when changes were requested",
        )?;
        context.check_limits()?;
        self.context = Some(context);
        self.log(actor, "context_saved", "", now);
        Ok(())
    }

    /// Checks that `actor` may submit now (author, state, complete context) without changing
    /// anything: the airlock runs the automatic check only after this passes.
    pub fn can_submit(&self, actor: &str) -> Result<&Context, AirlockError> {
        self.author_only(actor, "submit it")?;
        self.expect(
            &[State::Draft, State::ChangesRequested],
            "submit",
            "only a draft or an output with requested changes can be submitted",
        )?;
        let context = self.context.as_ref().ok_or_else(|| {
            AirlockError::Invalid(
                "before submitting, give the context: what the table shows, its denominators \
                 and how it was made"
                    .into(),
            )
        })?;
        context.check_complete()?;
        Ok(context)
    }

    /// The author submits: a new round opens with the current context and the check's stamp.
    pub fn submit(
        &mut self,
        actor: &str,
        check: CheckStamp,
        now: DateTime<Utc>,
    ) -> Result<u32, AirlockError> {
        let context = self.can_submit(actor)?.clone();
        let number = self.rounds.len() as u32 + 1;
        self.rounds.push(Round {
            number,
            submitted_at: now,
            context,
            check,
            outcome: None,
            closed_at: None,
        });
        self.state = State::Submitted;
        self.log(actor, "submitted", &format!("round {number}"), now);
        Ok(number)
    }

    /// A checker votes in the open round. Returns the round's outcome if this vote closed it.
    pub fn vote(
        &mut self,
        checker: &str,
        decision: Decision,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Outcome>, AirlockError> {
        if checker == self.output.author {
            return Err(AirlockError::SelfReview {
                output: self.output.id.clone(),
                actor: checker.to_string(),
            });
        }
        if checker.is_empty() || checker == SYSTEM_ACTOR {
            return Err(AirlockError::Invalid(format!(
                "{checker:?} is not a checker's account"
            )));
        }
        self.expect(
            &[State::Submitted],
            "vote",
            "votes are taken only while the output is submitted for review",
        )?;
        let round = self.rounds.len() as u32;
        if self
            .votes
            .iter()
            .any(|v| v.round == round && v.checker == checker)
        {
            return Err(AirlockError::AlreadyVoted {
                output: self.output.id.clone(),
                checker: checker.to_string(),
                round,
            });
        }
        if comment.len() > MAX_TEXT_BYTES {
            return Err(AirlockError::Invalid(format!(
                "the comment is {} bytes; at most {MAX_TEXT_BYTES} are allowed",
                comment.len()
            )));
        }
        if decision != Decision::Approve && comment.trim().is_empty() {
            return Err(AirlockError::Invalid(
                "say what must change (or why the output is rejected): the author needs a comment"
                    .into(),
            ));
        }
        self.votes.push(Vote {
            round,
            checker: checker.to_string(),
            decision,
            comment: comment.to_string(),
            at: now,
        });
        let mut cast: Vec<Decision> = self
            .votes
            .iter()
            .filter(|v| v.round == round)
            .map(|v| v.decision)
            .collect();
        cast.sort();
        let outcome = match cast.as_slice() {
            [a, b] if a == b => Some(a.outcome()),
            // Majority of three; a three-way split gives the middle: changes requested.
            [_, median, _] => Some(median.outcome()),
            _ => None,
        };
        self.log(checker, "voted", &format!("round {round}"), now);
        if let Some(o) = outcome {
            self.close_round(o, now);
            self.log(SYSTEM_ACTOR, "round_closed", o.as_str(), now);
        }
        Ok(outcome)
    }

    /// The author withdraws the output (any time before release, except after a rejection).
    pub fn withdraw(&mut self, actor: &str, now: DateTime<Utc>) -> Result<(), AirlockError> {
        self.author_only(actor, "withdraw it")?;
        self.expect(
            &[
                State::Draft,
                State::Submitted,
                State::ChangesRequested,
                State::Approved,
            ],
            "withdraw",
            "a released, rejected or withdrawn output stays as it is",
        )?;
        if self.state == State::Submitted {
            self.close_round(Outcome::Withdrawn, now);
        } else {
            self.state = State::Withdrawn;
        }
        self.log(actor, "withdrawn", "", now);
        Ok(())
    }

    /// The release found that the automatic check no longer gives what was approved: back to
    /// the author, who resubmits so that checkers review the new result.
    pub fn return_for_changes(
        &mut self,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AirlockError> {
        self.expect(
            &[State::Approved],
            "return it for changes",
            "only an approved output",
        )?;
        self.state = State::ChangesRequested;
        self.log(SYSTEM_ACTOR, "release_refused", reason, now);
        Ok(())
    }

    /// The release was written.
    pub fn mark_released(&mut self, note: &str, now: DateTime<Utc>) -> Result<(), AirlockError> {
        self.expect(
            &[State::Approved],
            "release",
            "only an approved output is released",
        )?;
        self.state = State::Released;
        self.log(SYSTEM_ACTOR, "released", note, now);
        Ok(())
    }

    fn close_round(&mut self, outcome: Outcome, now: DateTime<Utc>) {
        if let Some(r) = self.rounds.last_mut() {
            r.outcome = Some(outcome);
            r.closed_at = Some(now);
        }
        self.state = outcome.state();
    }

    fn author_only(&self, actor: &str, action: &'static str) -> Result<(), AirlockError> {
        if actor != self.output.author {
            return Err(AirlockError::NotAuthor {
                output: self.output.id.clone(),
                action,
            });
        }
        Ok(())
    }

    fn expect(
        &self,
        states: &[State],
        action: &'static str,
        hint: &'static str,
    ) -> Result<(), AirlockError> {
        if !states.contains(&self.state) {
            return Err(AirlockError::WrongState {
                output: self.output.id.clone(),
                state: self.state,
                action,
                hint,
            });
        }
        Ok(())
    }

    fn log(&mut self, actor: &str, action: &str, note: &str, now: DateTime<Utc>) {
        self.history.push(HistoryEntry {
            at: now,
            actor: actor.to_string(),
            action: action.to_string(),
            state: self.state,
            note: note.to_string(),
        });
        self.updated_at = now;
    }
}
