//! STUB: the simulator is being written.
