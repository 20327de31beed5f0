//! sim-primero crate of ping-primero (work in progress).
