//! config crate of ping-primero (work in progress).
