//! Batch gets and peeks: keys asked of one member for one group while others wait to be sent go
//! out together, in one `POST {base}{group}?get` (or `?peek`); each key's answer means what it
//! would alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use alo_group::{BoxFuture, Found, LoadError};
use bytes::Bytes;
use http::StatusCode;
use tokio::sync::oneshot;
use tracing::{Instrument as _, Span};

use super::Remote;
use crate::protocol::{Answer, Frames, Request, encode_keys};

/// The keys of one member waiting to be sent, by group.
pub(super) struct Batcher {
    /// The most keys in one batch get; 1 sends every key alone.
    max_keys: usize,
    queue: Mutex<Vec<Queued>>,
    /// Numbers the waiters, so that a leader knows its own.
    next_id: AtomicU64,
}

/// The keys of one group waiting for their batch to be sent.
struct Queued {
    group: String,
    kind: Kind,
    waiters: Vec<Waiter>,
}

/// What a batch asks for its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Their values, loaded if need be.
    Get,
    /// Their values if the member holds them, never loaded.
    Peek,
}

impl Kind {
    /// The request for one key alone.
    fn one<'a>(self, group: &'a str, key: &'a [u8]) -> Request<'a> {
        let (group, key) = (group.into(), key.into());
        match self {
            Kind::Get => Request::Get { group, key },
            Kind::Peek => Request::Peek { group, key },
        }
    }

    /// The request for many keys, in the body.
    fn many(self, group: &str) -> Request<'_> {
        let group = group.into();
        match self {
            Kind::Get => Request::GetMany { group },
            Kind::Peek => Request::PeekMany { group },
        }
    }
}

/// A key in a batch, and where its answer goes.
struct Waiter {
    id: u64,
    key: Bytes,
    deadline: Instant,
    answer: oneshot::Sender<Answer>,
    /// The span the key was asked in: the batch's request follows from it.
    span: Span,
}

impl Batcher {
    pub(super) fn new(max_keys: usize) -> Self {
        Batcher {
            max_keys,
            queue: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Queues `waiter` in its group's batch; `true` when it is the first, whose batch must be
    /// sent.
    fn enqueue(&self, kind: Kind, group: &str, waiter: Waiter) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queued) = queue
            .iter_mut()
            .find(|q| q.kind == kind && q.group == group)
        {
            queued.waiters.push(waiter);
            return false;
        }
        queue.push(Queued {
            group: group.to_string(),
            kind,
            waiters: vec![waiter],
        });
        true
    }

    /// Takes up to a batch of `group`'s waiting keys, dropping those nobody waits for any
    /// more. The rest stay queued, and `true` says a further batch must be sent for them.
    fn take(&self, kind: Kind, group: &str) -> (Vec<Waiter>, bool) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(at) = queue
            .iter()
            .position(|q| q.kind == kind && q.group == group)
        else {
            return (Vec::new(), false);
        };
        let waiters = &mut queue[at].waiters;
        waiters.retain(|w| !w.answer.is_closed());
        if waiters.len() <= self.max_keys {
            return (queue.swap_remove(at).waiters, false);
        }
        let rest = waiters.split_off(self.max_keys);
        (std::mem::replace(waiters, rest), true)
    }
}

/// Asks `remote` for `key` by `deadline` (its value, or for a peek whether it holds it): alone,
/// or in the batch of its group and kind that waits to be sent.
///
/// The first key of a batch leads it: once the tasks ready to run now have run (any of them may
/// add a key), it takes the batch. Alone in it, it asks from this task, so a lone hop hands
/// nothing to another task; with company, a task of its own sends the batch, which then goes
/// on whichever of its keys' callers leave. A leader dropped before it takes the batch leaves
/// that to a task too.
pub(super) async fn ask(
    remote: &Arc<Remote>,
    kind: Kind,
    group: &str,
    key: &[u8],
    deadline: Instant,
) -> Result<Found, LoadError> {
    if remote.health.is_down() {
        return Err(LoadError::unreachable(format_args!(
            "{} is down",
            remote.url
        )));
    }
    if remote.batcher.max_keys == 1 {
        return Remote::ask_one(remote, &kind.one(group, key), deadline).await;
    }
    let (answer, rx) = oneshot::channel();
    let id = remote.batcher.next_id.fetch_add(1, Ordering::Relaxed);
    let waiter = Waiter {
        id,
        key: Bytes::copy_from_slice(key),
        deadline,
        answer,
        span: Span::current(),
    };
    if remote.batcher.enqueue(kind, group, waiter) {
        let lead = Lead {
            remote,
            kind,
            group,
            taken: false,
        };
        let alone = lead.take(id).await;
        if alone {
            return Remote::ask_one(remote, &kind.one(group, key), deadline).await;
        }
    }
    let until = tokio::time::Instant::from_std(deadline);
    match tokio::time::timeout_at(until, rx).await {
        Ok(Ok(Answer::Got(found))) => found,
        Ok(Ok(Answer::AskAlone)) => Remote::ask_one(remote, &kind.one(group, key), deadline).await,
        // The task sending the batch panicked, or the runtime is shutting down.
        Ok(Err(_)) => Err(LoadError::unreachable(format_args!(
            "{}: the batch was dropped",
            remote.url
        ))),
        // The batch's request counts the member's failure, if it is one.
        Err(_) => Err(LoadError::unreachable(format_args!(
            "{}: no answer by the deadline",
            remote.url
        ))),
    }
}

/// The first key of a batch, until it takes the batch.
struct Lead<'a> {
    remote: &'a Arc<Remote>,
    kind: Kind,
    group: &'a str,
    taken: bool,
}

impl Lead<'_> {
    /// Waits for the tasks ready to run now, then takes the batch: `true` when the leader,
    /// waiter `id`, is alone in it (and asks itself), else the batch is sent by a task of its
    /// own (or was taken by another's task, for a leader that came just as it was sent).
    async fn take(mut self, id: u64) -> bool {
        let (remote, kind, group) = (self.remote, self.kind, self.group);
        let waiters = next_batch(remote, kind, group).await;
        self.taken = true;
        match waiters.as_slice() {
            [] => false,
            [one] if one.id == id => true,
            _ => {
                let batch = deliver(Arc::clone(remote), kind, group.to_string(), waiters);
                tokio::spawn(batch.in_current_span());
                false
            }
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        // The leader's caller left before the batch was taken: the keys queued behind it still
        // wait for it to be sent.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (remote, group) = (Arc::clone(self.remote), self.group.to_string());
            runtime.spawn(send(remote, self.kind, group));
        }
    }
}

/// Sends the batch of `group`'s waiting keys of `kind`, once the tasks ready to run now have
/// run (any of them may add a key), and gives each key its answer.
fn send(remote: Arc<Remote>, kind: Kind, group: String) -> BoxFuture<'static, ()> {
    // Boxed: it spawns itself for a batch's overflow, and the type of an `async fn` that
    // contains itself cannot be shown to be `Send`.
    Box::pin(async move {
        let waiters = next_batch(&remote, kind, &group).await;
        deliver(remote, kind, group, waiters).await;
    })
}

/// Once the tasks ready to run now have run (any of them may add a key), takes up to a batch
/// of `group`'s waiting keys of `kind`; a task of its own sends the rest.
async fn next_batch(remote: &Arc<Remote>, kind: Kind, group: &str) -> Vec<Waiter> {
    tokio::task::yield_now().await;
    let (waiters, more) = remote.batcher.take(kind, group);
    if more {
        tokio::spawn(send(Arc::clone(remote), kind, group.to_string()));
    }
    waiters
}

/// Asks for `waiters`' keys, in one batch or alone, and gives each key its answer.
async fn deliver(remote: Arc<Remote>, kind: Kind, group: String, waiters: Vec<Waiter>) {
    let answers = match waiters.as_slice() {
        [] => return,
        [one] => {
            let request = kind.one(&group, &one.key);
            vec![Answer::Got(
                Remote::ask_one(&remote, &request, one.deadline).await,
            )]
        }
        _ => ask_many(&remote, kind, &group, &waiters).await,
    };
    for (waiter, answer) in waiters.into_iter().zip(answers) {
        // A waiter that left has nobody to tell.
        let _ = waiter.answer.send(answer);
    }
}

/// One batch for `waiters`' keys, by the latest of their deadlines, and the answer for each.
async fn ask_many(
    remote: &Arc<Remote>,
    kind: Kind,
    group: &str,
    waiters: &[Waiter],
) -> Vec<Answer> {
    remote.health.batched(waiters.len());
    let keys: Vec<Bytes> = waiters.iter().map(|w| w.key.clone()).collect();
    let deadline = waiters
        .iter()
        .map(|w| w.deadline)
        .max()
        .expect("a batch has keys");
    let request = kind.many(group);
    let per_value = remote.max_response_bytes;
    // Each value within the limit of one, plus its frame's head.
    let limit = per_value.saturating_add(64).saturating_mul(keys.len());
    let span = remote.request_span(&request);
    for waiter in waiters {
        span.follows_from(&waiter.span);
    }
    let asked = Remote::ask(remote, &request, encode_keys(&keys), limit, deadline);
    let answered = asked.instrument(span).await;
    let every = |e: LoadError| {
        waiters
            .iter()
            .map(|_| Answer::Got(Err(e.clone())))
            .collect()
    };
    let (parts, body) = match answered {
        Ok(answer) => answer,
        Err(e) => return every(e),
    };
    if parts.status != StatusCode::OK {
        let error = Answer::of_response(parts.status, &parts.headers, body, &remote.url)
            .err()
            .unwrap_or_else(|| LoadError::unreachable("a batch answered without frames"));
        return every(error);
    }
    match Frames::new(body).answers(&remote.url) {
        Some(answers) if answers.len() == waiters.len() => answers
            .into_iter()
            .map(|(answer, len)| match answer {
                // As a single answer over the limit would be.
                Answer::Got(Ok(_)) if len > per_value => Answer::Got(Err(LoadError::unreachable(
                    format_args!("{}: a value over the response limit", remote.url),
                ))),
                answer => answer,
            })
            .collect(),
        _ => every(LoadError::unreachable(format_args!(
            "{}: a batch answer that does not follow the protocol",
            remote.url
        ))),
    }
}
