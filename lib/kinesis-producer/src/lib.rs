//! Kinesis producer (work in progress: the host does not use it yet).
