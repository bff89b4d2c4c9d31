//! Adapters: everything that touches the world on behalf of the machine. Each turns an effect
//! into I/O and its result into an event (or a report for the CLI).

pub mod window;
