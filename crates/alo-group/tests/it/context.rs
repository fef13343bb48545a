//! What a getter is told: the key, the deadline, the signal that its load was abandoned, and
//! the span it runs in.

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use alo_group::{Error, Group, LoadContext, LoadError, getter_fn, getter_fn_ctx};
use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::Instrument;
use tracing_subscriber::registry::{LookupSpan, Registry};

/// The contexts a getter was called with.
type Seen = Arc<Mutex<Vec<LoadContext>>>;

#[tokio::test(start_paused = true)]
async fn the_deadline_is_the_load_timeout_from_the_start() {
    let seen = Seen::default();
    let saw = Arc::clone(&seen);
    let getter = getter_fn_ctx(move |ctx: LoadContext| {
        saw.lock().expect("not poisoned").push(ctx.clone());
        async move { Ok::<_, LoadError>(ctx.key().clone()) }
    });
    let timeout = Duration::from_secs(7);
    let group = Group::builder("g", getter)
        .load_timeout(timeout)
        .build()
        .expect("a group");

    let started: Instant = tokio::time::Instant::now().into_std();
    assert_eq!(group.get("k").await.expect("value"), "k");
    let seen = seen.lock().expect("not poisoned");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].key(), "k");
    assert_eq!(seen[0].deadline(), started + timeout);
    assert_eq!(seen[0].remaining(), timeout);
    assert!(
        !seen[0].is_cancelled(),
        "a load that answered is not abandoned"
    );
}

#[tokio::test(start_paused = true)]
async fn the_signal_fires_when_the_load_times_out() {
    let (fired, watched) = oneshot::channel();
    let fired = Mutex::new(Some(fired));
    let getter = getter_fn_ctx(move |ctx: LoadContext| {
        // Work handed to another task, as a blocking read would be: it stops when told.
        let fired = fired.lock().expect("not poisoned").take();
        let cancelled = ctx.cancelled();
        tokio::spawn(async move {
            cancelled.await;
            if let Some(fired) = fired {
                let _ = fired.send(tokio::time::Instant::now());
            }
        });
        assert!(!ctx.is_cancelled());
        std::future::pending::<Result<Bytes, LoadError>>()
    });
    let group = Group::builder("g", getter)
        .load_timeout(Duration::from_secs(3))
        .build()
        .expect("a group");

    let started = tokio::time::Instant::now();
    assert_eq!(group.get("k").await, Err(Error::Timeout));
    // Paused time jumps to this timeout if nothing else can happen: a signal that never fires
    // fails the test instead of hanging it.
    let at = tokio::time::timeout(Duration::from_secs(60), watched).await;
    let at = at.expect("the signal fired").expect("sent");
    assert_eq!(at - started, Duration::from_secs(3));
}

#[tokio::test]
async fn the_getter_runs_in_the_load_span_a_child_of_the_get() {
    with_registry();
    // For each call: the context's span, the current span, and the current span's parent.
    let seen: Arc<Mutex<Vec<[Option<tracing::Id>; 3]>>> = Arc::default();
    let saw = Arc::clone(&seen);
    let getter = getter_fn_ctx(move |ctx: LoadContext| {
        let current = tracing::Span::current();
        assert_eq!(current.metadata().map(|m| m.name()), Some("load"));
        saw.lock()
            .expect("not poisoned")
            .push([ctx.span().id(), current.id(), parent(&current)]);
        async move { Ok::<_, LoadError>(ctx.key().clone()) }
    });
    let group = Group::builder("g", getter).build().expect("a group");

    let request = tracing::info_span!("request");
    let got = group.get("k").instrument(request.clone()).await;
    assert_eq!(got.expect("value"), "k");
    let seen = seen.lock().expect("not poisoned");
    let [ctx, current, parent] = seen[0].clone();
    assert!(ctx.is_some());
    assert_eq!(ctx, current);
    assert_eq!(parent, request.id());
}

#[tokio::test]
async fn a_closure_of_the_key_runs_in_the_load_span_too() {
    with_registry();
    let names: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let saw = Arc::clone(&names);
    let getter = getter_fn(move |key: Bytes| {
        let name = tracing::Span::current().metadata().map(|m| m.name());
        saw.lock().expect("not poisoned").extend(name);
        async move { Ok(key) }
    });
    let group = Group::builder("g", getter).build().expect("a group");
    group.get("k").await.expect("value");
    assert_eq!(*names.lock().expect("not poisoned"), ["load"]);
}

/// Makes a span registry the process's subscriber, once. (A subscriber set per thread is not
/// enough: a callsite first reached on a thread without one, by a test running in parallel, is
/// cached as uninteresting, and its spans then go unrecorded everywhere.)
fn with_registry() {
    static GLOBAL: Once = Once::new();
    GLOBAL.call_once(|| {
        tracing::subscriber::set_global_default(Registry::default()).expect("the only subscriber");
    });
}

/// The parent of `span` in the registry.
fn parent(span: &tracing::Span) -> Option<tracing::Id> {
    let id = span.id()?;
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        Some(registry.span(&id)?.parent()?.id())
    })
}
