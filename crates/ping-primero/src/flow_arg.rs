//! A flow as the command line names it, wherever a command takes one (`run-once`, `ledger
//! list/retry/runs --flow`): its name (`referrals-to-primero`) or its short id (`1.1`),
//! case-insensitive, `_` accepted for `-`. Help texts list the names with their ids.

use clap::builder::PossibleValue;
use clap::ValueEnum;
use pp_flows::Flow;

/// One flow, named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowArg(pub Flow);

static FLOW_ARGS: [FlowArg; 4] = [
    FlowArg(Flow::ReferralsToPrimero),
    FlowArg(Flow::DecisionsToProgres),
    FlowArg(Flow::ReferralsToProgres),
    FlowArg(Flow::DecisionsToPrimero),
];

/// What the flow moves, for help texts.
fn what(flow: Flow) -> &'static str {
    match flow {
        Flow::ReferralsToPrimero => "proGres referrals become Primero cases",
        Flow::DecisionsToProgres => "Primero's decisions go back to proGres",
        Flow::ReferralsToProgres => "Primero referrals to UNHCR become proGres referrals",
        Flow::DecisionsToPrimero => "proGres's decisions go back to Primero",
    }
}

/// The possible value of `flow`: its name, with its short id (and the name spelt with `_`)
/// as aliases.
fn possible_value(flow: Flow) -> PossibleValue {
    let underscored: &'static str = match flow {
        Flow::ReferralsToPrimero => "referrals_to_primero",
        Flow::DecisionsToProgres => "decisions_to_progres",
        Flow::ReferralsToProgres => "referrals_to_progres",
        Flow::DecisionsToPrimero => "decisions_to_primero",
    };
    PossibleValue::new(flow.name())
        .aliases([flow.id(), underscored])
        .help(format!("({}) {}", flow.id(), what(flow)))
}

impl FlowArg {
    /// The flow's name, as the ledger stores it.
    pub fn name(self) -> String {
        self.0.name().to_owned()
    }
}

impl ValueEnum for FlowArg {
    fn value_variants<'a>() -> &'a [Self] {
        &FLOW_ARGS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(possible_value(self.0))
    }
}

/// The flows `run-once` runs: one, or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowsArg {
    One(Flow),
    All,
}

static FLOWS_ARGS: [FlowsArg; 5] = [
    FlowsArg::One(Flow::ReferralsToPrimero),
    FlowsArg::One(Flow::DecisionsToProgres),
    FlowsArg::One(Flow::ReferralsToProgres),
    FlowsArg::One(Flow::DecisionsToPrimero),
    FlowsArg::All,
];

impl FlowsArg {
    /// The flows, in the order 1.1, 1.2, 2.1, 2.2.
    pub fn flows(self) -> Vec<Flow> {
        match self {
            FlowsArg::One(f) => vec![f],
            FlowsArg::All => Flow::ALL.to_vec(),
        }
    }
}

impl ValueEnum for FlowsArg {
    fn value_variants<'a>() -> &'a [Self] {
        &FLOWS_ARGS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            FlowsArg::One(f) => possible_value(*f),
            FlowsArg::All => PossibleValue::new("all").help("the four flows, in the order above"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_short_ids_resolve_to_the_same_flow() {
        for f in Flow::ALL {
            for text in [f.name(), f.id(), &f.name().to_uppercase().replace('-', "_")] {
                assert_eq!(FlowArg::from_str(text, true), Ok(FlowArg(f)), "{text}");
                assert_eq!(
                    FlowsArg::from_str(text, true),
                    Ok(FlowsArg::One(f)),
                    "{text}"
                );
            }
        }
        assert_eq!(FlowsArg::from_str("ALL", true), Ok(FlowsArg::All));
        assert_eq!(FlowsArg::All.flows(), Flow::ALL.to_vec());
        assert!(FlowArg::from_str("3.1", true).is_err());
        assert!(FlowArg::from_str("all", true).is_err());
    }
}
