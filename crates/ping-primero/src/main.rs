//! The `ping-primero` binary: command line, configuration loading, telemetry, scheduler, demo.

fn main() {
    println!("ping-primero");
}
