pub mod client_table;
pub mod hlc;
pub mod ids;
pub mod merge_patch;
pub mod operation;
pub mod store;
pub mod time;
