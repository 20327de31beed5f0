//! Plain-language explanations of the reason codes that leave a record rejected, in conflict
//! or failed: what went wrong, what a person should fix, and where (proGres, Primero, or the
//! value maps of the configuration). Used by the "Needs attention" and record pages.

/// Where the fix for a reason is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixIn {
    /// In proGres v4 (the UNHCR side).
    Progres,
    /// In Primero v2 (the UNICEF side).
    Primero,
    /// In the value maps of ping-primero's configuration.
    ValueMaps,
    /// In ping-primero's configuration, outside the value maps.
    Configuration,
    /// Usually nothing: the record is retried by itself; look only if it persists.
    Nowhere,
    /// Depends on the message.
    Varies,
}

impl FixIn {
    /// Short text for the page.
    pub fn label(self) -> &'static str {
        match self {
            FixIn::Progres => "Fix in proGres",
            FixIn::Primero => "Fix in Primero",
            FixIn::ValueMaps => "Fix in the value maps of the configuration",
            FixIn::Configuration => "Fix in the configuration",
            FixIn::Nowhere => "Usually resolves itself",
            FixIn::Varies => "See the message",
        }
    }
}

/// The explanation of one reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// A short title.
    pub title: &'static str,
    /// Where to fix it.
    pub fix_in: FixIn,
    /// What happened and what a person should do, in plain words.
    pub advice: &'static str,
}

/// The explanation for `code`; unknown codes get a generic one.
pub fn explain(code: Option<&str>) -> Explanation {
    let e = |title, fix_in, advice| Explanation {
        title,
        fix_in,
        advice,
    };
    match code.unwrap_or("") {
        "missing_required_fields" => e(
            "Required fields are missing",
            FixIn::Progres,
            "The referral lacks fields Primero needs (the message names them: for example \
             intervention type, individual id, registration group, given or family name, date \
             of birth or sex). Complete them on the individual or the intervention in proGres, \
             then retry.",
        ),
        "unmapped_intervention_type" => e(
            "Intervention type has no Primero service type",
            FixIn::ValueMaps,
            "The proGres intervention type named in the message has no entry in the \
             intervention-type map. Add it to the value maps of the configuration (or correct \
             the intervention type in proGres if it was chosen by mistake), restart the \
             service, then retry.",
        ),
        "unmapped_service_type" => e(
            "Primero service type has no proGres service",
            FixIn::ValueMaps,
            "The Primero service type named in the message has no proGres service GUID in the \
             service map. Add it to the value maps of the configuration (or correct the service \
             type in Primero), restart the service, then retry.",
        ),
        "unmapped_language" => e(
            "Language has no entry in the language map",
            FixIn::ValueMaps,
            "A language of the individual is not in the language map. Add it to the value maps \
             of the configuration (or configure the explicit fallback language), restart the \
             service, then retry.",
        ),
        "unmapped_sex" => e(
            "Sex value has no entry in the sex map",
            FixIn::ValueMaps,
            "The sex code of the individual is not in the sex map. Add the code to the value \
             maps of the configuration (or correct the value at the source), restart the \
             service, then retry.",
        ),
        "unmapped_protection_concern" => e(
            "Protection concern has no specific-need category",
            FixIn::ValueMaps,
            "A protection concern of the case has no proGres specific-need category in the map. \
             Add it to the value maps of the configuration, restart the service, then retry.",
        ),
        "inconsistent_join_rows" => e(
            "proGres returned contradicting rows for one referral",
            FixIn::Progres,
            "The detail rows of one LP intervention disagree on a field that should be the \
             same in every row (the message names it). Check the intervention and the \
             individual in proGres for duplicated or contradicting data, correct it, then retry.",
        ),
        "missing_lp_intervention_id" => e(
            "Referral has no LP intervention id",
            FixIn::Progres,
            "The pending referral came from proGres without its LP intervention id, so it \
             cannot be tracked. Check the referral's delivery record in proGres (and the \
             shipping process configuration in PING), then retry.",
        ),
        "legacy_intervention_number" => e(
            "Intervention number without its LP id and business unit",
            FixIn::Primero,
            "The service row in Primero carries an intervention number in the old format and \
             the ledger does not know its LP intervention. Correct the service row's \
             proGres intervention number in Primero to `number,LP id,business unit`, then retry.",
        ),
        "duplicate_cases" => e(
            "Several Primero cases match (conflict)",
            FixIn::Primero,
            "More than one Primero case carries this individual's UNHCR number and none is \
             chosen by the proGres Primero id. Merge or close the duplicate cases in Primero, \
             or set the right case id in proGres (Primero id of the intervention), then retry.",
        ),
        "case_id_taken" => e(
            "The new case's id is held by another case (conflict)",
            FixIn::Primero,
            "Creating the Primero case for this individual found an existing case under the \
             same record id whose UNHCR individual number is different (changed by hand, or \
             another person's). Nothing was written to it. Check that case in Primero: correct \
             its individual number if it is this person's, or tell the service team, then retry.",
        ),
        "unknown_status" => e(
            "Unknown status value",
            FixIn::Varies,
            "The source sent a decision status that ping-primero does not know: a proGres \
             status code (flow 2.2) or a Primero unhcr_referral_status value (flow 1.2); the \
             message names it. It is never read as an acceptance. Correct the status in the \
             system that holds the decision; if it is a new legitimate status, the software \
             needs an update. Retry after the status is corrected.",
        ),
        "malformed_identifier" => e(
            "An identifier is unusable",
            FixIn::Varies,
            "The source sent an identifier (LP intervention id, case id, service id...) that \
             is blank, too long or holds control characters, so the record cannot be tracked \
             safely. The message names the field. Correct it in the system that sent it \
             (proGres for flow 1.1, Primero for flow 1.2), then retry.",
        ),
        "transition_refused" => e(
            "Primero refused the status change",
            FixIn::Primero,
            "Primero answered without applying the requested status (for example the referral \
             was already accepted, rejected or closed there). Check the referral's status in \
             Primero, reopen or correct it if the decision must still be recorded, then retry.",
        ),
        "incomplete_caseworker" => e(
            "Caseworker profile incomplete",
            FixIn::Primero,
            "The case owner in Primero is missing, or lacks an email, phone or position. \
             Complete the user's profile in Primero (or configure the focal-point policy), \
             then retry.",
        ),
        "case_not_found" => e(
            "Primero case not found",
            FixIn::Primero,
            "No Primero case has the case id that proGres recorded. The record is retried \
             automatically in case the case appears later; if it persists, check the case id \
             on the interoperability referral in proGres and the case in Primero.",
        ),
        "referral_not_found" => e(
            "Primero referral not found",
            FixIn::Primero,
            "The Primero case has no referral for this service row. It is retried \
             automatically; if it persists, check in Primero that the service was referred \
             (not only recorded) to UNHCR.",
        ),
        "validation_error" => e(
            "The destination refused the record",
            FixIn::Varies,
            "Primero or PING refused the record as invalid; the message names the field or \
             code it objected to. Correct that field at the source (proGres for flows to \
             Primero, Primero for flows to proGres) or the value map that produced it, then \
             retry.",
        ),
        "check_status_timeout" | "check_status_no_result" => e(
            "Waiting for proGres to confirm",
            FixIn::Nowhere,
            "The referral reached PING, but proGres has not yet confirmed it (no check-status \
             result so far). The next runs check again without sending it twice; look only if \
             it turns into an unresolved conflict.",
        ),
        "check_status_unresolved" => e(
            "proGres never confirmed the referral",
            FixIn::Progres,
            "PING accepted the referral but repeated checks never confirmed it (or PING no \
             longer knows the transaction). It may or may not exist in proGres: search proGres \
             for the interoperability referral with this service id (the record key) before \
             retrying, since a retry sends it again.",
        ),
        "ingestion_unconfirmed" => e(
            "Sending to proGres may not have completed",
            FixIn::Nowhere,
            "The call that sends the referral to PING failed in a way that does not say \
             whether PING received it. Before sending it again, the next run searches proGres \
             for it and only re-sends when it is not there. Look only if it persists.",
        ),
        "inconsistent_detail_rows" => e(
            "proGres returned contradicting details",
            FixIn::Progres,
            "proGres returned several detail rows for this interoperability referral that \
             disagree (the message names the fields). Check the referral in proGres and \
             correct it, then retry.",
        ),
        "duplicate_referrals" => e(
            "Several Primero referrals for one service",
            FixIn::Primero,
            "The Primero case has more than one referral for this service row, so it is not \
             clear which one to update. Revoke the extra referrals in Primero, then retry.",
        ),
        "operator_retry" => e(
            "Re-queued by an operator",
            FixIn::Nowhere,
            "An operator asked for this record to be tried again; the next run of its flow \
             will pick it up.",
        ),
        "transient" | "timeout" | "server_error" | "rate_limited" => e(
            "Temporary failure",
            FixIn::Nowhere,
            "A timeout, a server error or a rate limit stopped delivery. The record is retried \
             automatically at its next retry time; look at the systems' health only if it \
             keeps failing.",
        ),
        "auth" | "auth_failed" => e(
            "Credentials refused",
            FixIn::Configuration,
            "PING or Primero refused ping-primero's credentials. Check the client secret, \
             subscription key or Primero account in the configuration, then retry.",
        ),
        _ => e(
            "Other reason",
            FixIn::Varies,
            "The record needs a person. Read the message: it names the fields, codes and \
             identifiers involved. Correct the record in the system that holds it (proGres or \
             Primero) or the value maps of the configuration, then retry.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_reason_has_its_own_explanation() {
        let generic = explain(Some("something_new"));
        for code in [
            "missing_required_fields",
            "unmapped_intervention_type",
            "unmapped_service_type",
            "unmapped_language",
            "unmapped_sex",
            "inconsistent_join_rows",
            "missing_lp_intervention_id",
            "legacy_intervention_number",
            "duplicate_cases",
            "case_id_taken",
            "unknown_status",
            "transition_refused",
            "incomplete_caseworker",
            "case_not_found",
            "referral_not_found",
            "validation_error",
            "check_status_timeout",
            "check_status_no_result",
            "check_status_unresolved",
            "ingestion_unconfirmed",
            "inconsistent_detail_rows",
            "duplicate_referrals",
            "malformed_identifier",
        ] {
            assert_ne!(
                explain(Some(code)),
                generic,
                "{code} falls back to the generic text"
            );
        }
        assert_eq!(explain(None), generic);
    }

    #[test]
    fn value_map_problems_point_at_the_value_maps() {
        for code in ["unmapped_language", "unmapped_sex", "unmapped_service_type"] {
            assert_eq!(explain(Some(code)).fix_in, FixIn::ValueMaps);
        }
        assert_eq!(explain(Some("duplicate_cases")).fix_in, FixIn::Primero);
        assert_eq!(
            explain(Some("missing_required_fields")).fix_in,
            FixIn::Progres
        );
    }
}
