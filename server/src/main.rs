//! `noted`: see `noted --help`.

use std::process::ExitCode;

use clap::Parser;
use noted_server::cli::{Cli, Command, ConfigCommand, DevArgs};
use noted_server::failure::Failure;
use noted_server::{bench, commands, dev, logging, panics, shutdown};

// Every request and peer message allocates (JSON values, frames, futures) from
// several threads; mimalloc's thread-local free lists serve that far faster than
// the system allocator under load (see the performance section of the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    panics::exit_on_panic();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&Failure::general(format!("cannot start the runtime: {error}"))),
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            None => dev::run(DevArgs::from_environment(), shutdown::on_signal()).await,
            Some(Command::Dev(args)) => dev::run(args, shutdown::on_signal()).await,
            Some(Command::Serve(args)) => commands::serve(args, shutdown::on_signal()).await,
            Some(Command::Init(args)) => commands::init(&args),
            Some(Command::Bench(args)) => {
                return bench::run(args).await.map(|finished| ended(&finished)).map_err(Failure::general);
            }
            Some(Command::Config { command: ConfigCommand::Init(args) }) => {
                commands::config_init(&args).map_err(Failure::general)
            }
        }
        .map(|()| 0)
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => fail(&error),
    }
}

/// Says how a bench run ended unless it passed, and returns its exit status
/// (1 not linearizable, 3 undecided; see `noted_server::bench`).
fn ended(finished: &bench::Finished) -> u8 {
    match finished {
        bench::Finished::Passed => {}
        bench::Finished::NotLinearizable(why) => eprintln!("noted: error: {why}"),
        bench::Finished::Undecided(why) => eprintln!("noted: undecided: {why}"),
    }
    finished.exit_code()
}

/// An error's exit status is 2, or one of [`Failure`]'s for the data directory
/// (`noted bench` also has 1 and 3, see `ended`).
fn fail(failure: &Failure) -> ExitCode {
    eprintln!("noted: error: {}", failure.message);
    ExitCode::from(failure.exit_code)
}
