//! What tests scripted for a simulator's pushes, per device token and by default, layered
//! over the token prefixes' [`Behaviour`](super::Behaviour): the next scripted answer for the
//! token wins, then the token's standing answer (e.g. "unregistered"), then the default.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Scripted answers of type `A` (the APNs or the FCM answer).
#[derive(Debug)]
pub(super) struct Script<A> {
    inner: Mutex<Inner<A>>,
}

#[derive(Debug)]
struct Inner<A> {
    per_token: HashMap<String, VecDeque<A>>,
    standing: HashMap<String, A>,
    default: Option<A>,
}

impl<A: Clone> Default for Script<A> {
    fn default() -> Self {
        Script {
            inner: Mutex::new(Inner {
                per_token: HashMap::new(),
                standing: HashMap::new(),
                default: None,
            }),
        }
    }
}

impl<A: Clone> Script<A> {
    /// Answer the next pushes to `token` with `answers`, in order.
    pub(super) fn push(&self, token: &str, answers: Vec<A>) {
        let mut inner = self.inner.lock().expect("sim lock");
        inner
            .per_token
            .entry(token.to_string())
            .or_default()
            .extend(answers);
    }

    /// Answer every push to `token` that has no scripted answer with `answer`.
    pub(super) fn stand(&self, token: &str, answer: A) {
        let mut inner = self.inner.lock().expect("sim lock");
        inner.standing.insert(token.to_string(), answer);
    }

    /// Answer every push without a scripted or standing answer with `answer`.
    pub(super) fn set_default(&self, answer: A) {
        self.inner.lock().expect("sim lock").default = Some(answer);
    }

    /// The scripted answer to the next push to `token`, if any (it is used up).
    pub(super) fn next(&self, token: &str) -> Option<A> {
        let mut inner = self.inner.lock().expect("sim lock");
        if let Some(answer) = inner.per_token.get_mut(token).and_then(VecDeque::pop_front) {
            return Some(answer);
        }
        inner
            .standing
            .get(token)
            .or(inner.default.as_ref())
            .cloned()
    }
}
