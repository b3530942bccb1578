//! STUB: the tokio driver is being written.
