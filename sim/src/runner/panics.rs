//! Replica panics as findings: caught, located and reported once, never printed
//! in the middle of an exploration.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Set while a replica handles an input: its panics are reported, not printed.
    static PANICS_ARE_QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic happened.
    static QUIET_PANIC_LOCATION: RefCell<String> = const { RefCell::new(String::new()) };
}

static QUIET_HOOK: Once = Once::new();

/// Runs `action`, catching a panic and returning its message and location instead of
/// printing them: a replica's failed assertion is a finding the report shows, once.
/// Panics elsewhere (in tests, on other threads) still go to the previous hook.
pub fn quietly<T>(action: impl FnOnce() -> T) -> Result<T, (String, String)> {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if PANICS_ARE_QUIET.with(Cell::get) {
                let location = info.location().map_or_else(|| "an unknown place".to_string(), ToString::to_string);
                QUIET_PANIC_LOCATION.with(|last| *last.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
    let was_quiet = PANICS_ARE_QUIET.with(|quiet| quiet.replace(true));
    let result = catch_unwind(AssertUnwindSafe(action));
    PANICS_ARE_QUIET.with(|quiet| quiet.set(was_quiet));
    result.map_err(|payload| {
        let location = QUIET_PANIC_LOCATION.with(|last| last.borrow().clone());
        (panic_message(payload.as_ref()), location)
    })
}

/// The text of a panic payload (`panic!` with a message gives a `String` or a `&str`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else {
        "a panic without a message".to_string()
    }
}
