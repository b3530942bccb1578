//! STUB: storage is being written.
