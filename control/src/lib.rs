//! mgw control plane (being written).
