//! `alo-node`: parse flags, start logging and traces, bind, and run the node until SIGINT or
//! SIGTERM; SIGHUP reads the members again.

use std::process::ExitCode;

use alo_node::origin::DEMO;
use alo_node::{Config, Listeners, Reload, Telemetry, run};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let config = Config::parse();
    let telemetry = match Telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("alo-node: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    raise_descriptor_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "starting the runtime failed");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config));
    // Blocking reads still running (a file that never ends, say) must not hold the process:
    // they are left behind.
    runtime.shutdown_background();
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Registered before the node binds, so that a signal sent once it is up is never the
    // default action (fatal, for SIGHUP too).
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let listeners = Listeners::bind(&config)?;
    announce(&config, &listeners)?;

    let reload = Reload::new();
    let reloads = reload.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reloads.now().await;
        }
    });
    let (first, first_signal) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        let _ = first.send(());
        // A second signal: the operator does not want to wait for the drain.
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    run(config, listeners, reload, async {
        let _ = first_signal.await;
    })
    .await
}

/// Says on stdout where the node listens (scripts and tests read the client API's line), and
/// with the demo origin, what to try.
fn announce(config: &Config, listeners: &Listeners) -> std::io::Result<()> {
    let peer_addr = listeners.peer.local_addr()?;
    let api_addr = listeners.api.local_addr()?;
    println!("alo-node: peer server on {peer_addr}");
    println!("alo-node: client API at http://{api_addr}");
    if config.origin_url.is_none() && config.origin_dir.is_none() {
        println!("try:");
        for (key, _) in DEMO.iter().take(2) {
            println!("  curl http://{api_addr}/api/demo/{key}");
        }
        println!("  curl http://{api_addr}/stats");
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard one, so that connections, not a default of
/// 1,024, are the limit; logs both.
fn raise_descriptor_limit() {
    let (was, hard) = rlimit::Resource::NOFILE.get().unwrap_or((0, 0));
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => tracing::info!(soft, hard, was, "open file limit"),
        Err(e) => tracing::warn!(error = %e, was, hard, "could not raise the open file limit"),
    }
}
