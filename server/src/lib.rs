//! # noted-server: noted's core over real sockets
//!
//! One [`driver`] task per replica owns the sans-IO core and is its only writer;
//! [`http`] carries clients' requests to it, [`peer`] carries protocol messages
//! between replicas (authenticated TCP) and heartbeats (UDP), and [`metrics`] and
//! `tracing` report what happens, and [`feed`] streams committed changes to
//! watchers; [`storage`] keeps a replica's state in its data directory. [`node`] wires one replica together; [`dev`]
//! runs three in one process; [`commands`] implements `noted serve` and
//! `noted config init`; [`bench`] is `noted bench`, a load generator.

pub mod bench;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dev;
pub mod driver;
pub mod failure;
pub mod feed;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod panics;
pub mod peer;
pub mod shutdown;
pub mod storage;
