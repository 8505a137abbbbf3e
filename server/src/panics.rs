//! A panic anywhere ends the process.
//!
//! The replica's state lives in one driver task; when that task panics, tokio
//! would carry on with the others, leaving a process that answers `/status` and
//! holds its sockets but orders nothing. A supervisor can only restart a process
//! that stopped, so every panic is logged and the process exits with
//! [`PANIC_EXIT_CODE`].

use std::panic::PanicHookInfo;

/// The exit status of a process ended by a panic (EX_SOFTWARE in sysexits.h).
pub const PANIC_EXIT_CODE: i32 = 70;

/// Installs the hook: log the panic as an error, with where it happened, and exit.
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info: &PanicHookInfo<'_>| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|message| (*message).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info.location().map_or_else(|| "unknown".into(), ToString::to_string);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%location, thread, "panic: {message}; exiting so that a supervisor restarts noted");
        // Also on stderr directly: the logger may be the thing that panicked.
        eprintln!("noted: panic at {location}: {message}; exiting with status {PANIC_EXIT_CODE}");
        std::process::exit(PANIC_EXIT_CODE);
    }));
}
