//! A leaving node hands its values over to the members that own them without it, so that the
//! cluster stays warm when a member goes away on purpose.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::freshness::now;
use crate::{FILL_GUARD, Found, Group, Peer, Unreached, escape};

/// Values to hand over: each key, and its value with the time it has left.
type Values = Vec<(Bytes, Found)>;

/// The most bytes of values one fill request carries.
const FILL_BYTES: usize = 1 << 20;

/// The most values one fill request carries.
const FILL_VALUES: usize = 256;

/// What a [`Group::hand_over`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handover {
    /// Values offered to the members that own them now, and taken.
    pub values: usize,
    /// Their bytes (keys and values).
    pub bytes: usize,
    /// Values left behind: past the byte cap, the deadline, or with a member that did not take
    /// them.
    pub left: usize,
    /// Members that did not take their values, each once, with the first reason.
    pub unreachable: Vec<Unreached>,
}

impl Group {
    /// Hands this node's values over to the members that own them without it (the picker's
    /// [`heir`](crate::PeerPicker::heir) of each key), most recently used first, at most
    /// `max_bytes` of keys and values, by `deadline`: what a node does before it leaves the
    /// cluster on purpose. Each member keeps the values it does not hold yet, unless it took a
    /// write of the key in the last [`FILL_GUARD`]: a write there during the handover wins. The
    /// values are offered until `deadline` or half of [`FILL_GUARD`] after they were read,
    /// whichever is sooner. A value keeps the time it has left. Values sent in one request
    /// go in batches of at most 256 values or 1 MiB, one batch at a time per member, the members
    /// in parallel.
    pub async fn hand_over(&self, max_bytes: usize, deadline: Instant) -> Handover {
        let inner = &self.inner;
        let mut handover = Handover::default();
        let Some(picker) = &inner.picker else {
            return handover;
        };
        // A member refuses the fill of a key written there in the last `FILL_GUARD`, a write
        // the values read now may predate: they are offered for half of it, leaving the other
        // half for a request that outlives its deadline on the way.
        let deadline = deadline.min(now() + FILL_GUARD / 2);
        // The values within the byte cap, most recently used first.
        let mut bytes = 0usize;
        let mut offer: Values = Vec::new();
        for (key, found) in inner.store.fresh_values() {
            let size = key.len() + found.value.len();
            if bytes.saturating_add(size) > max_bytes {
                handover.left += 1;
                continue;
            }
            bytes += size;
            offer.push((key, found));
        }
        // Offered to their heirs; what a member did not take is offered once more to whom the
        // picker names then (a member that refused is down by then, and skipped).
        for _round in 0..2 {
            if offer.is_empty() {
                break;
            }
            let mut heirs: HashMap<String, (Arc<dyn Peer>, Values)> = HashMap::new();
            for (key, found) in offer.drain(..) {
                match picker.heir(&key) {
                    Some(heir) => {
                        let name = heir.name().to_string();
                        let (_, values) = heirs.entry(name).or_insert_with(|| (heir, Vec::new()));
                        values.push((key, found));
                    }
                    None => handover.left += 1,
                }
            }
            let sends = heirs
                .into_values()
                .map(|(heir, values)| self.fill(heir, values, deadline));
            for sent in join_all(sends).await {
                handover.values += sent.taken;
                handover.bytes += sent.bytes;
                if let Some(reason) = sent.failed {
                    tracing::warn!(group = %inner.name, peer = sent.heir.name(), reason = %escape(&reason), left = sent.left.len(), "a member did not take the values handed over");
                    if !handover
                        .unreachable
                        .iter()
                        .any(|u| u.peer == sent.heir.name())
                    {
                        handover.unreachable.push(Unreached {
                            peer: sent.heir.name().to_string(),
                            reason: reason.into(),
                        });
                    }
                }
                offer.extend(sent.left);
            }
        }
        handover.left += offer.len();
        let handed = handover.values as u64;
        inner
            .counters
            .handed_over
            .fetch_add(handed, Ordering::Relaxed);
        handover
    }
}

/// What one heir took of the values offered it.
struct Sent {
    heir: Arc<dyn Peer>,
    taken: usize,
    bytes: usize,
    /// The values it did not take, and why.
    left: Values,
    failed: Option<String>,
}

impl Group {
    /// Offers `heir` its `values`, a batch at a time, until one is not taken or `deadline`.
    async fn fill(&self, heir: Arc<dyn Peer>, values: Values, deadline: Instant) -> Sent {
        let name = &self.inner.name;
        let (mut taken, mut bytes, mut failed) = (0, 0, None);
        for batch in batches(&values) {
            let size: usize = batch.iter().map(|(k, f)| k.len() + f.value.len()).sum();
            let until = tokio::time::Instant::from_std(deadline);
            match tokio::time::timeout_at(until, heir.fill(name, batch, deadline)).await {
                Ok(Ok(())) => (taken, bytes) = (taken + batch.len(), bytes + size),
                Ok(Err(e)) => {
                    failed = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    failed = Some("no answer by the deadline".to_string());
                    break;
                }
            }
        }
        let left = values.into_iter().skip(taken).collect();
        Sent {
            heir,
            taken,
            bytes,
            left,
            failed,
        }
    }
}

/// `values` in batches of at most [`FILL_VALUES`] values and about [`FILL_BYTES`] bytes (a value
/// larger than that goes alone).
fn batches(values: &[(Bytes, Found)]) -> Vec<&[(Bytes, Found)]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (key, found)) in values.iter().enumerate() {
        let size = key.len() + found.value.len();
        if i > start && (i - start == FILL_VALUES || bytes + size > FILL_BYTES) {
            batches.push(&values[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < values.len() {
        batches.push(&values[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(len: usize) -> (Bytes, Found) {
        (
            Bytes::from_static(b"k"),
            Found::new(Bytes::from(vec![0; len]), None),
        )
    }

    #[test]
    fn batches_hold_at_most_their_count_and_about_their_bytes() {
        let small: Vec<_> = (0..600).map(|_| value(10)).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [256, 256, 88]);
        let large: Vec<_> = (0..3).map(|_| value(FILL_BYTES)).collect();
        let sizes: Vec<usize> = batches(&large).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1, 1], "a value over the cap goes alone");
        assert!(batches(&[]).is_empty());
    }
}
