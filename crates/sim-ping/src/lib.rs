//! sim-ping crate of ping-primero (work in progress).
