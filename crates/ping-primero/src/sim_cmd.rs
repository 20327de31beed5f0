//! `ping-primero sim`: serves the PING and Primero simulators on 127.0.0.1 until stopped,
//! optionally seeded from a scenario file `{"ping": {...}, "primero": {...}}` (either part may
//! be absent; each part is the seed document of that simulator, see their READMEs).

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Port of the PING simulator (also serves the B2C token endpoint).
    #[arg(long, default_value_t = 8081)]
    pub ping_port: u16,
    /// Port of the Primero simulator.
    #[arg(long, default_value_t = 8082)]
    pub primero_port: u16,
    /// Scenario JSON to load: `{"ping": <seed>, "primero": <seed>}`.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// Generate a scenario of this many referrals each way instead of (or besides) a file.
    #[arg(long)]
    pub generate: Option<usize>,
}

/// The two simulators running in this process.
pub struct Sims {
    pub ping: pp_sim_ping::SimHandle,
    pub primero: pp_sim_primero::SimHandle,
}

impl Sims {
    /// Starts both simulators with their default options on the given ports (0 = any).
    pub async fn start(ping_port: u16, primero_port: u16) -> anyhow::Result<Sims> {
        let ping = pp_sim_ping::spawn(pp_sim_ping::Options::default(), ping_port)
            .await
            .with_context(|| format!("cannot start the PING simulator on port {ping_port}"))?;
        let primero = pp_sim_primero::spawn(pp_sim_primero::Options::default(), primero_port)
            .await
            .with_context(|| {
                format!("cannot start the Primero simulator on port {primero_port}")
            })?;
        Ok(Sims { ping, primero })
    }

    /// Loads a combined scenario document into both simulators.
    pub async fn seed(&self, doc: &serde_json::Value) -> anyhow::Result<()> {
        if let Some(p) = doc.get("ping") {
            self.ping
                .seed(p.clone())
                .await
                .map_err(|e| anyhow::anyhow!("PING seed refused: {e}"))?;
        }
        if let Some(p) = doc.get("primero") {
            self.primero
                .seed(p.clone())
                .await
                .map_err(|e| anyhow::anyhow!("Primero seed refused: {e}"))?;
        }
        Ok(())
    }

    pub async fn shutdown(self) {
        self.ping.shutdown().await;
        self.primero.shutdown().await;
    }
}

/// Runs `sim` until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let sims = Sims::start(args.ping_port, args.primero_port).await?;
    if let Some(path) = &args.seed {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read seed file {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("seed file {} is not valid JSON", path.display()))?;
        sims.seed(&doc).await?;
    }
    if let Some(n) = args.generate {
        let doc = crate::scenario::generate(n, 42);
        sims.seed(&doc).await?;
    }
    println!("PING simulator:    {}", sims.ping.base_url());
    println!("  token URL:       {}", sims.ping.token_url());
    println!("Primero simulator: {}", sims.primero.base_url());
    println!("Control API under /_sim/ on both (see README). Ctrl-C stops.");
    crate::shutdown_signal().await;
    sims.shutdown().await;
    Ok(())
}
